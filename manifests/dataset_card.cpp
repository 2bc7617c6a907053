#include "manifests/dataset_card.h"

#include "augment_version.h"
#include "pipeline/base/fs_util.h"

namespace augment {

using nlohmann::json;

json dataset_card(const DatasetCardFacts& f) {
  const auto& names = f.class_names;
  json classes = json::array();
  std::vector<std::int64_t> rejected(names.size(), 0);
  for (const auto& e : f.merged->rejected) ++rejected[static_cast<std::size_t>(e.label)];
  std::int64_t before = 0, after = 0;
  for (std::size_t c = 0; c < names.size(); ++c) {
    const auto& t = f.tally[c];
    classes.push_back({{"name", names[c]},
                       {"label", c},
                       {"folder", f.folders[c]},
                       {"before", {{"train", t.real_train}, {"val", t.val}, {"test", t.test}}},
                       {"planned_synthetic", f.plan->classes[c].synthetic},
                       {"synthetic", t.synthetic},
                       {"filter_gave_up", rejected[c]},
                       {"after",
                        {{"real", t.real_in},
                         {"synthetic", t.synthetic},
                         {"total", t.real_in + t.synthetic},
                         {"train_total", t.real_train + t.synthetic}}}});
    before += t.real_train;
    after += t.real_in + t.synthetic;
  }
  json generation = sampling_settings_json(
      f.merged->settings, {"sampler", "steps", "guidance", "conditioning", "checkpoint", "resolution", "channels"});
  generation.update({{"seed", f.merged->run_seed},
                     {"shards", f.merged->shard_count},
                     {"min_confidence", f.min_confidence},
                     {"max_tries", f.max_tries}});
  json files = {{"manifest", "manifest.csv"}, {"metadata", "metadata.jsonl"}};
  if (f.croissant) files["croissant"] = "croissant.json";
  return {{"name", f.name},
          {"description", "image-folder dataset augmented with class-conditional diffusion samples by augment"},
          {"created", iso_time_now()},
          {"class_names", names},
          {"classes", classes},
          {"totals", {{"real_train_before", before}, {"images_after", after}}},
          {"policy", f.plan->policy},
          {"real_images", f.real_images},
          {"synthetic_weight", f.synthetic_weight},
          {"generation", generation},
          {"files", files},
          {"versions", {{"augment", AUGMENT_VERSION}, {"git", AUGMENT_GIT_REVISION}}},
          {"evaluation", f.evaluation}};
}

}  // namespace augment
