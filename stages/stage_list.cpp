#include "stages/stage_list.h"

#include "pipeline/context.h"
#include "stages/cache_stage.h"
#include "stages/classifier_stage.h"
#include "stages/emit_stage.h"
#include "stages/evaluate_stage.h"
#include "stages/export_stage.h"
#include "stages/sample_plan.h"
#include "stages/sample_stage.h"
#include "stages/scan_stage.h"
#include "stages/subsample_stage.h"
#include "stages/train_stage.h"

namespace augment {

std::vector<std::unique_ptr<Stage>> make_pipeline_stages() {
  std::vector<std::unique_ptr<Stage>> stages;
  stages.push_back(make_scan_stage());
  stages.push_back(make_subsample_stage());
  stages.push_back(make_cache_stage());
  stages.push_back(make_classifier_stage());
  stages.push_back(make_train_stage());
  stages.push_back(make_sample_stage());
  stages.push_back(make_evaluate_stage());
  stages.push_back(make_emit_stage());
  stages.push_back(make_export_stage());
  return stages;
}

void declare_stage_options(OptionRegistry& registry) {
  declare_options<GlobalOptions>(registry);
  declare_options<ScanOptions>(registry);
  declare_options<SubsampleOptions>(registry);
  declare_options<CacheOptions>(registry);
  declare_options<ClassifierOptions>(registry);
  declare_options<TrainOptions>(registry);
  declare_options<SampleOptions>(registry);
  declare_options<EvaluateOptions>(registry);
  declare_options<EmitOptions>(registry);
  declare_options<ExportOptions>(registry);
}

}  // namespace augment
