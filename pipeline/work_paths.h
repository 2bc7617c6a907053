// The work dir's files, relative to it: the one table by which every stage's inputs(), outputs()
// and run() name them (Context::path makes one a path). A stage's own scratch files stay inside
// its folder and are named there.
#pragma once

#include <string>
#include <string_view>

namespace augment::work_file {

inline constexpr const char* kScanIndex = "scan/index.jsonl";
inline constexpr const char* kScanIndexCsv = "scan/index.csv";
inline constexpr const char* kScanClasses = "scan/classes.json";
inline constexpr const char* kScanRejects = "scan/rejects.csv";
inline constexpr const char* kScanDuplicates = "scan/duplicates.csv";
// Thumbnails scan decodes on the way, for cache to reuse (scan.prefetch_tiles).
inline constexpr const char* kScanTiles = "scan/tiles.h5";

inline constexpr const char* kSubsampleClasses = "subsample/classes.json";
inline constexpr const char* kSubsampleManifest = "subsample/manifest.jsonl";
inline constexpr const char* kSubsampleManifestCsv = "subsample/manifest.csv";

inline constexpr const char* kCacheTrain = "cache/train.h5";
inline constexpr const char* kCacheVal = "cache/val.h5";
inline constexpr const char* kCacheTest = "cache/test.h5";
// "cache/<split>.h5" for split train, val or test.
inline std::string cache_split(std::string_view split) { return "cache/" + std::string(split) + ".h5"; }

inline constexpr const char* kClassifierModel = "classifier/model.pt";
inline constexpr const char* kClassifierModelMeta = "classifier/model.pt.json";
inline constexpr const char* kClassifierMetrics = "classifier/metrics.json";

inline constexpr const char* kTrainModel = "train/model.pt";
inline constexpr const char* kTrainModelMeta = "train/model.json";
inline constexpr const char* kTrainLoss = "train/loss.csv";
inline constexpr const char* kTrainPlan = "train/plan.json";

inline constexpr const char* kSamplePlan = "sample/plan.json";
// A file of the sample store by its name, e.g. a shard's journal.
inline std::string sample_file(std::string_view name) { return "sample/" + std::string(name); }

inline constexpr const char* kEvaluateMetrics = "evaluate/metrics.json";
inline constexpr const char* kEvaluateReport = "evaluate/report";
// A file of the report, relative to it, e.g. "index.html".
inline std::string report_file(std::string_view rel) { return std::string(kEvaluateReport) + "/" + std::string(rel); }
inline constexpr const char* kEvaluateDownstreamRuns = "evaluate/downstream_runs.jsonl";

inline constexpr const char* kEmitRows = "emit/rows.jsonl";
inline constexpr const char* kEmitCard = "emit/dataset.json";
inline constexpr const char* kEmitDone = "emit/done.json";

inline constexpr const char* kExportIndex = "export/index.json";

}  // namespace augment::work_file
