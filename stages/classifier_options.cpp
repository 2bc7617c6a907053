#include "stages/classifier_options.h"

namespace augment {

void ClassifierOptions::bind(OptionBinder<ClassifierOptions>& b) {
  using I = std::int64_t;
  b.add("width", &ClassifierOptions::width, "channels of the classifier's first stage (doubling per stage up to 8x)",
        in_range<I>(4, 512));
  b.add("blocks", &ClassifierOptions::blocks, "residual blocks per stage (depth)", in_range<I>(1, 8));
  b.add("norm", &ClassifierOptions::norm, "normalisation layers: group (independent of batch size) or batch", {},
        kField.with_choices({"group", "batch"}));
  b.add("epochs", &ClassifierOptions::epochs, "most epochs to train (early stopping usually ends sooner)",
        in_range<I>(1, 10000));
  b.add("patience", &ClassifierOptions::patience,
        "stop after this many epochs without a better validation balanced accuracy (0: train all epochs)",
        at_least<I>(0));
  b.add("min_steps", &ClassifierOptions::min_steps,
        "fewest training steps the epochs make: on a small train split each epoch passes over the images several "
        "times, so a few hundred images still train a classifier (0: one pass per epoch)",
        in_range<I>(0, 10000000));
  b.add("batch_size", &ClassifierOptions::batch_size, "images per training step", in_range<I>(2, 65536));
  b.add("optimizer", &ClassifierOptions::optimizer, "adamw, or sgd (with Nesterov momentum)", {},
        kField.with_choices({"adamw", "sgd"}));
  b.add("lr", &ClassifierOptions::lr, "peak learning rate (0: 0.002 for adamw, 0.05 for sgd)", in_range(0.0, 10.0));
  b.add("weight_decay", &ClassifierOptions::weight_decay,
        "weight decay of conv and linear weights (-1: 0.05 for adamw, 0.0005 for sgd)",
        Check<double>([](const double& v) {
          return (v == -1.0 || (v >= 0.0 && v <= 10.0)) ? std::string()
                                                        : std::string("must be -1 (auto) or between 0 and 10");
        }));
  b.add("momentum", &ClassifierOptions::momentum, "momentum of sgd", in_range(0.0, 0.999));
  b.add("warmup_epochs", &ClassifierOptions::warmup_epochs,
        "epochs of linear learning-rate warm-up before the cosine decay", in_range(0.0, 1000.0));
  b.add("label_smoothing", &ClassifierOptions::label_smoothing,
        "label smoothing of the training loss (softens the confidences the sample filter reads)", in_range(0.0, 0.5));
  b.add("flip", &ClassifierOptions::flip,
        "random horizontal flips of training images (turn off when mirroring changes the class, e.g. digits or text)");
  b.add("crop_pad", &ClassifierOptions::crop_pad,
        "random crops: pad by this many pixels (mirrored borders) and crop back (-1: resolution/8, 0: off)",
        Check<I>([](const I& v) {
          return v >= -1 && v <= 64 ? std::string() : std::string("must be between -1 (auto) and 64");
        }));
  b.add(
      "balance", &ClassifierOptions::balance,
      "unbalanced classes: loss (weight the loss by inverse class frequency), sampler (class-balanced batches), none");
}

}  // namespace augment
