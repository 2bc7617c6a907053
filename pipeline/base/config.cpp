#include "pipeline/base/config.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <boost/program_options.hpp>

#include "pipeline/base/csv.h"

namespace augment {

namespace po = boost::program_options;

// ---- values ----

std::string format_value(bool v) { return v ? "true" : "false"; }
std::string format_value(std::int64_t v) { return std::to_string(v); }
std::string format_value(int v) { return std::to_string(v); }
std::string format_value(double v) {
  std::string s = fmt::format("{}", v);
  return s;
}
std::string format_value(const std::string& v) { return v; }
std::string format_value(const std::vector<std::string>& v) { return csv::join_row(v); }

void parse_value(const std::string& text, bool& out) {
  std::string t = text;
  std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return std::tolower(c); });
  if (t == "true" || t == "1" || t == "yes" || t == "on") {
    out = true;
  } else if (t == "false" || t == "0" || t == "no" || t == "off") {
    out = false;
  } else {
    throw std::invalid_argument("'" + text + "' is not a boolean; accepted values: true, false");
  }
}

void parse_value(const std::string& text, std::int64_t& out) {
  std::size_t used = 0;
  try {
    out = std::stoll(text, &used, 10);
  } catch (...) {
    used = 0;
  }
  if (used == 0 || used != text.size()) throw std::invalid_argument("'" + text + "' is not an integer");
}

void parse_value(const std::string& text, int& out) {
  std::int64_t wide = 0;
  parse_value(text, wide);
  if (wide < INT32_MIN || wide > INT32_MAX) throw std::invalid_argument("'" + text + "' is out of range");
  out = static_cast<int>(wide);
}

void parse_value(const std::string& text, double& out) {
  std::size_t used = 0;
  try {
    out = std::stod(text, &used);
  } catch (...) {
    used = 0;
  }
  if (used == 0 || used != text.size() || !std::isfinite(out)) {
    throw std::invalid_argument("'" + text + "' is not a number");
  }
}

void parse_value(const std::string& text, std::string& out) { out = text; }

void parse_value(const std::string& text, std::vector<std::string>& out) {
  out.clear();
  if (text.empty()) return;
  try {
    out = csv::split_row(text);
  } catch (const std::exception& e) {
    throw std::invalid_argument("'" + text + "' is not a comma-separated list: " + e.what());
  }
}

// ---- registry ----

void OptionRegistry::declare(OptionInfo info) {
  if (options_.count(info.key)) throw std::logic_error("option declared twice: " + info.key);
  if (!info.alias.empty()) {
    if (aliases_.count(info.alias) || options_.count(info.alias))
      throw std::logic_error("alias declared twice: " + info.alias);
    aliases_[info.alias] = info.key;
  }
  options_.emplace(info.key, std::move(info));
}

const OptionInfo* OptionRegistry::find(std::string_view key_or_alias) const {
  std::string k(key_or_alias);
  if (auto it = options_.find(k); it != options_.end()) return &it->second;
  if (auto it = aliases_.find(k); it != aliases_.end()) return &options_.at(it->second);
  return nullptr;
}

static std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t prev = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t cur = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] == b[j - 1] ? 0 : 1)});
      prev = cur;
    }
  }
  return row[b.size()];
}

std::string OptionRegistry::suggest(std::string_view unknown) const {
  std::string best;
  std::size_t best_d = 4;
  auto consider = [&](const std::string& name) {
    const auto d = edit_distance(unknown, name);
    // A key whose last part matches (e.g. "min_per_class" for "subsample.min_per_class") is close too.
    const auto dot = name.rfind('.');
    const bool tail = dot != std::string::npos && name.substr(dot + 1) == unknown;
    if (tail || d < best_d) {
      best_d = tail ? 0 : d;
      best = name;
    }
  };
  for (const auto& [key, info] : options_) {
    consider(key);
    if (!info.alias.empty()) consider(info.alias);
  }
  return best;
}

// ---- config ----

Config::Config(const OptionRegistry& registry) : registry_(registry) {
  for (const auto& [key, info] : registry.all()) {
    if (info.type == "list") {
      std::vector<std::string> items;
      parse_value(info.default_text, items);
      values_[key] = info.repeatable ? items : std::vector<std::string>{info.default_text};
      if (info.default_text.empty()) values_[key].clear();
    } else {
      values_[key] = {info.default_text};
    }
  }
}

static std::string accepted_hint(const OptionInfo& info) {
  if (!info.choices.empty()) {
    std::string s;
    for (const auto& c : info.choices) s += (s.empty() ? "" : ", ") + c;
    return " (accepted values: " + s + ")";
  }
  return " (expected " + info.type + ")";
}

static const OptionInfo& known(const OptionRegistry& registry, const std::string& key, const std::string& source) {
  const OptionInfo* info = registry.find(key);
  if (!info) {
    auto hint = registry.suggest(key);
    throw UserError(ExitCode::kConfig,
                    fmt::format("{}: unknown option '{}'{}; `augment help options` lists them all", source, key,
                                hint.empty() ? "" : fmt::format(" (did you mean '{}'?)", hint)));
  }
  return *info;
}

void Config::set(const std::string& key, const std::string& value, const std::string& source) {
  const OptionInfo& info = known(registry_, key, source);
  if (const auto err = info.check(value); !err.empty()) {
    throw UserError(ExitCode::kConfig,
                    fmt::format("{}: bad value '{}' for option '{}': {}{}", source, value, info.key, err,
                                err.find("accepted") == std::string::npos ? accepted_hint(info) : ""));
  }
  values_[info.key] = {value};
  explicit_[info.key] = source;
}

void Config::set_derived(const std::string& key, const std::string& value, const std::string& note) {
  const OptionInfo& info = known(registry_, key, note);
  if (const auto err = info.check(value); !err.empty()) {
    throw UserError(ExitCode::kConfig,
                    fmt::format("{}: bad value '{}' for option '{}': {}", note, value, info.key, err));
  }
  values_[info.key] = {value};
  explicit_.erase(info.key);
  derived_[info.key] = note;
}

std::string Config::derived_note(const std::string& key) const {
  if (explicit_.count(key)) return {};
  const auto it = derived_.find(key);
  return it == derived_.end() ? std::string() : it->second;
}

void Config::append(const std::string& key, const std::string& value, const std::string& source) {
  const OptionInfo& info = known(registry_, key, source);
  if (const auto err = info.check(value); !err.empty()) {
    throw UserError(ExitCode::kConfig,
                    fmt::format("{}: bad value '{}' for option '{}': {}", source, value, info.key, err));
  }
  if (!explicit_.count(info.key)) values_[info.key].clear();
  values_[info.key].push_back(value);
  explicit_[info.key] = source;
}

const std::vector<std::string>& Config::values(const std::string& key) const {
  auto it = values_.find(key);
  if (it == values_.end()) throw std::logic_error("option not declared: " + key);
  return it->second;
}

std::string Config::value(const std::string& key) const {
  const auto& items = values(key);
  const OptionInfo* info = registry_.find(key);
  if (info && info->repeatable) return csv::join_row(items);
  return items.empty() ? std::string() : items.back();
}

std::map<std::string, std::string> Config::snapshot(const std::vector<std::string>& scopes) const {
  std::map<std::string, std::string> out;
  for (const auto& [key, info] : registry_.all()) {
    if (info.transient) continue;
    for (const auto& scope : scopes) {
      if (key == scope ||
          (key.size() > scope.size() && key.compare(0, scope.size(), scope) == 0 && key[scope.size()] == '.')) {
        out[key] = value(key);
      }
    }
  }
  return out;
}

// Values are written verbatim (INI lines have no inline comments); only a value with blanks at
// either end is quoted so they survive trimming.
static std::string ini_quote(const std::string& v) {
  if (v.empty() || (v.front() != ' ' && v.back() != ' ' && v.front() != '"')) return v;
  std::string q = "\"";
  for (char c : v) {
    if (c == '"' || c == '\\') q += '\\';
    q += c;
  }
  return q + "\"";
}

std::string Config::to_ini() const {
  std::map<std::string, std::vector<const OptionInfo*>> sections;
  for (const auto& [key, info] : registry_.all()) {
    if (info.transient) continue;
    const auto dot = key.find('.');
    sections[dot == std::string::npos ? "" : key.substr(0, dot)].push_back(&info);
  }
  std::string out = "# Effective configuration written by augment; usable with --config.\n";
  for (const auto& [section, infos] : sections) {
    out += section.empty() ? "\n" : fmt::format("\n[{}]\n", section);
    for (const auto* info : infos) {
      const auto name = section.empty() ? info->key : info->key.substr(section.size() + 1);
      out += fmt::format("# {}\n", info->help);
      if (info->repeatable) {
        const auto& items = values(info->key);
        if (items.empty()) out += fmt::format("# {} =\n", name);
        for (const auto& item : items) out += fmt::format("{} = {}\n", name, ini_quote(item));
      } else {
        out += fmt::format("{} = {}\n", name, info->type == "list" ? value(info->key) : ini_quote(value(info->key)));
      }
    }
  }
  return out;
}

// ---- INI ----

static std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

// A value that is one quoted string (as ini_quote writes) is unquoted; anything else, such as a
// CSV list "a, b",c, is kept verbatim.
static std::string ini_unquote(const std::string& v) {
  if (v.size() < 2 || v.front() != '"' || v.back() != '"') return v;
  std::string out;
  for (std::size_t i = 1; i + 1 < v.size(); ++i) {
    if (v[i] == '\\' && i + 2 < v.size()) {
      out += v[++i];
    } else if (v[i] == '"') {
      return v;  // an inner quote: not a single quoted string
    } else {
      out += v[i];
    }
  }
  return out;
}

void apply_ini_file(const std::filesystem::path& path, Config& config, bool override_command_line) {
  std::ifstream in(path);
  if (!in) {
    throw UserError(ExitCode::kNoInput,
                    fmt::format("cannot read config file {}: check the path given to --config", path.string()));
  }
  std::string line, section;
  int lineno = 0;
  std::set<std::string> seen;
  std::map<std::string, std::string> repeated_source;
  while (std::getline(in, line)) {
    ++lineno;
    const std::string where = fmt::format("{}:{}", path.string(), lineno);
    std::string t = trim(line);
    if (t.empty() || t[0] == '#' || t[0] == ';') continue;
    if (t.front() == '[') {
      if (t.back() != ']') throw UserError(ExitCode::kConfig, where + ": malformed section header '" + t + "'");
      section = trim(t.substr(1, t.size() - 2));
      if (section == "global") section.clear();
      continue;
    }
    const auto eq = t.find('=');
    if (eq == std::string::npos)
      throw UserError(ExitCode::kConfig, where + ": expected 'key = value', got '" + t + "'");
    const std::string name = trim(t.substr(0, eq));
    const std::string value = ini_unquote(trim(t.substr(eq + 1)));
    const std::string key = section.empty() ? name : section + "." + name;
    const OptionInfo* info = config.registry().find(key);
    if (!info || info->key != key) {
      // Aliases are a command-line convenience; the file uses the full names.
      auto hint = config.registry().suggest(key);
      throw UserError(ExitCode::kConfig, fmt::format("{}: unknown key '{}'{}", where, key,
                                                     hint.empty() ? "" : fmt::format(" (did you mean '{}'?)", hint)));
    }
    if (!override_command_line && config.is_set(key) && seen.count(key) == 0) {
      // Set on the command line already: the command line wins.
      continue;
    }
    if (info->repeatable) {
      config.append(key, value, where);
    } else {
      if (seen.count(key))
        throw UserError(ExitCode::kConfig, fmt::format("{}: key '{}' given twice in the file", where, key));
      config.set(key, value, where);
    }
    seen.insert(key);
  }
}

// ---- command line ----

void parse_command_line(const std::vector<std::string>& args, Config& config) {
  const OptionRegistry& registry = config.registry();
  po::options_description desc;
  for (const auto& [key, info] : registry.all()) {
    for (const auto& name : {info.key, info.alias}) {
      if (name.empty()) continue;
      if (info.repeatable) {
        desc.add_options()(name.c_str(), po::value<std::vector<std::string>>(), info.help.c_str());
      } else if (info.type == "bool") {
        desc.add_options()(name.c_str(), po::value<std::string>()->implicit_value("true"), info.help.c_str());
      } else {
        desc.add_options()(name.c_str(), po::value<std::string>(), info.help.c_str());
      }
    }
  }
  po::variables_map vm;
  try {
    const int style = po::command_line_style::unix_style & ~po::command_line_style::allow_guessing &
                      ~po::command_line_style::allow_sticky;
    auto parsed = po::command_line_parser(args).options(desc).style(style).run();
    po::store(parsed, vm);
  } catch (const po::unknown_option& e) {
    std::string name = e.get_option_name();
    while (!name.empty() && name.front() == '-') name.erase(0, 1);
    const auto hint = registry.suggest(name);
    throw UserError(ExitCode::kUsage,
                    fmt::format("unknown option '--{}'{}; `augment help options` lists them all", name,
                                hint.empty() ? "" : fmt::format(" (did you mean '--{}'?)", hint)));
  } catch (const po::error& e) {
    throw UserError(ExitCode::kUsage, fmt::format("command line: {}", e.what()));
  }

  // Collect per key; a key given both by name and by alias is a duplicate too.
  std::map<std::string, std::vector<std::string>> cli;
  std::map<std::string, std::string> spelled;
  for (const auto& [name, value] : vm) {
    const OptionInfo* info = registry.find(name);
    if (spelled.count(info->key)) {
      throw UserError(ExitCode::kUsage,
                      fmt::format("option '--{}' given twice (also as '--{}')", name, spelled[info->key]));
    }
    spelled[info->key] = name;
    if (info->repeatable) {
      cli[info->key] = value.as<std::vector<std::string>>();
    } else {
      cli[info->key] = {value.as<std::string>()};
    }
  }
  for (const auto& [key, items] : cli) {
    const OptionInfo* info = registry.find(key);
    for (const auto& item : items) {
      if (info->repeatable)
        config.append(key, item, "--" + spelled[key]);
      else
        config.set(key, item, "--" + spelled[key]);
    }
  }
  if (registry.find("config") && !config.value("config").empty()) {
    apply_ini_file(config.value("config"), config);
  }
}

}  // namespace augment
