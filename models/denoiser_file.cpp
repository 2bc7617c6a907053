#include "models/denoiser_file.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "pipeline/base/errors.h"
#include "pipeline/base/fs_util.h"

namespace augment {

using nlohmann::json;

json to_json(const DenoiserMeta& m) {
  const auto& c = m.model;
  return {{"format", 1},
          {"model",
           {{"in_channels", c.in_channels},
            {"resolution", c.resolution},
            {"base_channels", c.base_channels},
            {"channel_mult", c.channel_mult},
            {"blocks", c.blocks},
            {"attention_resolutions", c.attention_resolutions},
            {"heads", c.heads},
            {"dropout", c.dropout},
            {"num_classes", c.num_classes},
            {"conditioning", name_of(c.conditioning)},
            {"cbn_norm", c.cbn_norm}}},
          {"diffusion",
           {{"steps", m.diffusion.steps},
            {"schedule", name_of(m.diffusion.schedule)},
            {"prediction", name_of(m.diffusion.prediction)}}},
          {"class_names", m.class_names},
          {"resolution", c.resolution},
          {"channels", c.in_channels},
          {"conditioning", name_of(c.conditioning)},
          {"steps_trained", m.steps_trained},
          {"parameters", m.parameters},
          {"cond_drop", m.cond_drop},
          {"weights", "ema"}};
}

DenoiserMeta denoiser_meta_from_json(const json& j) {
  DenoiserMeta m;
  const auto& jm = j.at("model");
  auto& c = m.model;
  c.in_channels = jm.at("in_channels");
  c.resolution = jm.at("resolution");
  c.base_channels = jm.at("base_channels");
  c.channel_mult = jm.at("channel_mult").get<std::vector<int>>();
  c.blocks = jm.at("blocks");
  c.attention_resolutions = jm.at("attention_resolutions").get<std::vector<int>>();
  c.heads = jm.at("heads");
  c.dropout = jm.at("dropout");
  c.num_classes = jm.at("num_classes");
  c.conditioning = parse_name<Conditioning>(jm.at("conditioning").get<std::string>());
  c.cbn_norm = jm.at("cbn_norm");
  const auto& jd = j.at("diffusion");
  m.diffusion.steps = jd.at("steps");
  m.diffusion.schedule = parse_name<NoiseSchedule>(jd.at("schedule").get<std::string>());
  m.diffusion.prediction = parse_name<Prediction>(jd.at("prediction").get<std::string>());
  m.class_names = j.at("class_names").get<std::vector<std::string>>();
  m.steps_trained = j.value("steps_trained", std::int64_t{0});
  m.parameters = j.value("parameters", std::int64_t{0});
  m.cond_drop = j.value("cond_drop", 0.0);
  return m;
}

void save_denoiser(UNet& model, const DenoiserMeta& meta, const std::filesystem::path& pt,
                   const std::filesystem::path& json_path) {
  write_atomically(pt, [&](const std::filesystem::path& tmp) {
    torch::serialize::OutputArchive archive;
    model->save(archive);
    archive.save_to(tmp.string());
  });
  write_text_atomically(json_path, to_json(meta).dump(2) + "\n");
}

LoadedDenoiser load_denoiser(const std::filesystem::path& pt, const std::filesystem::path& json_path,
                             const torch::Device& device) {
  LoadedDenoiser out;
  std::error_code ec;
  if (!std::filesystem::exists(json_path, ec) || !std::filesystem::exists(pt, ec)) {
    throw UserError(ExitCode::kNoInput, fmt::format("no trained denoiser at {}", pt.string()));
  }
  try {
    out.meta = denoiser_meta_from_json(json::parse(read_text_file(json_path)));
    out.model = UNet(out.meta.model);
    torch::serialize::InputArchive archive;
    archive.load_from(pt.string(), device);
    out.model->load(archive);
  } catch (const UserError&) {
    throw;
  } catch (const std::exception& e) {
    std::string why = e.what();
    throw UserError(ExitCode::kDataError, fmt::format("cannot load the trained denoiser {} ({})", pt.string(),
                                                      why.substr(0, why.find('\n'))));
  }
  out.model->to(device);
  out.model->eval();
  for (auto& p : out.model->parameters()) p.set_requires_grad(false);
  return out;
}

}  // namespace augment
