# Options of a tiny full run of every stage (well under a minute on one core), for the shell tests
# that run the whole pipeline: `source tests/tiny_run.sh; tiny_run_options INPUT` fills $options.
tiny_run_options() {
  options=(--input "$1" --resolution 8 --threads 1 --precision fp32 --quiet
    --subsample.val_fraction 0.2 --subsample.test_fraction 0.2
    --classifier.min_steps 0 --classifier.epochs 1 --classifier.width 4
    --train.channels 8 --train.channel_mult 1,2 --train.blocks 1 --train.attention 4 --train.heads 2
    --train.diffusion_steps 20 --train.steps 4 --train.minutes 0 --train.batch_size 4 --train.checkpoint_every 2
    --sample.sampler ddim --sample.steps 2 --sample.batch_size 2
    --evaluate.seeds 1 --evaluate.downstream_epochs 1 --evaluate.tsne_points 20 --evaluate.tsne_iterations 300
    --export.shard_size 8)
}
