// Options: declared once (name, type, default, help, check) next to the struct they fill, usable
// from the command line (`--scan.strict`, or a short alias `--strict`) and from INI files
// (`[scan]` / `strict = true`), with the command line winning over the file.
#pragma once

#include <algorithm>
#include <climits>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "pipeline/base/errors.h"
#include "pipeline/base/named_enum.h"

namespace augment {

// Everything the registry knows about one option.
struct OptionInfo {
  std::string key;    // dotted name, e.g. "scan.strict"; global options have no dot
  std::string alias;  // optional short command-line name, e.g. "strict"
  std::string help;
  std::string type;  // "bool", "int", "float", "string", "list", "int list", "float list", "choice"
  std::string default_text;
  std::vector<std::string> choices;  // for "choice"
  bool repeatable = false;           // each command-line occurrence adds one item (paths with commas)
  bool transient = false;            // steers this invocation only: not hashed, not written to config.ini
  // Parses and checks a text value; returns an error message or "" when valid.
  std::function<std::string(const std::string&)> check;
};

class OptionRegistry {
 public:
  void declare(OptionInfo info);
  const OptionInfo* find(std::string_view key_or_alias) const;
  const std::map<std::string, OptionInfo>& all() const { return options_; }
  // Closest known key, for "did you mean" hints ("" when nothing is close).
  std::string suggest(std::string_view unknown) const;

 private:
  std::map<std::string, OptionInfo> options_;
  std::map<std::string, std::string> aliases_;
};

// The effective values (text form) of every option for one invocation.
class Config {
 public:
  explicit Config(const OptionRegistry& registry);

  // Sets a value from `source` (for messages: "command line", "job.ini:12"); throws
  // UserError(kConfig) naming the key and the accepted values when invalid.
  void set(const std::string& key, const std::string& value, const std::string& source);
  // Like set() for repeatable options: appends.
  void append(const std::string& key, const std::string& value, const std::string& source);

  const std::vector<std::string>& values(const std::string& key) const;  // raw items
  std::string value(const std::string& key) const;                       // joined text form
  bool is_set(const std::string& key) const { return explicit_.count(key) > 0; }
  // A default that depends on other options or on what a work dir recorded (the size table, a
  // stage's record): sets the value like set() but leaves the key unset by the user; `note` says
  // where the value came from.
  void set_derived(const std::string& key, const std::string& value, const std::string& note);
  // Where a value not set by the user came from ("" for the built-in default).
  std::string derived_note(const std::string& key) const;

  // key -> text value for all non-transient keys whose name starts with one of the scopes
  // ("scan" matches "scan.*"; a global key matches exactly).
  std::map<std::string, std::string> snapshot(const std::vector<std::string>& scopes) const;
  // Effective configuration as an INI file that `--config` accepts.
  std::string to_ini() const;

  const OptionRegistry& registry() const { return registry_; }

 private:
  const OptionRegistry& registry_;
  std::map<std::string, std::vector<std::string>> values_;
  std::map<std::string, std::string> explicit_;  // key -> where it was set
  std::map<std::string, std::string> derived_;   // key -> note, for values set by set_derived
};

// Parses `args` (after the subcommand) into `config`: the INI named by --config first, then the
// command line on top. Throws UserError(kUsage) for unknown/duplicate flags, kConfig for bad values.
void parse_command_line(const std::vector<std::string>& args, Config& config);
// Applies an INI file; unknown sections/keys are errors naming file:line.
void apply_ini_file(const std::filesystem::path& path, Config& config, bool override_command_line = false);

// ---- typed binding: one definition per field serves declaration and loading ----

std::string format_value(bool v);
std::string format_value(std::int64_t v);
std::string format_value(int v);
std::string format_value(double v);
std::string format_value(const std::string& v);
std::string format_value(const std::vector<std::string>& v);

// Parse helpers; each throws std::invalid_argument with a message saying what is accepted.
void parse_value(const std::string& text, bool& out);
void parse_value(const std::string& text, std::int64_t& out);
void parse_value(const std::string& text, int& out);
void parse_value(const std::string& text, double& out);
void parse_value(const std::string& text, std::string& out);
// Comma-separated, with CSV quoting for items that contain commas ("a,b",c).
void parse_value(const std::string& text, std::vector<std::string>& out);
// Lists of numbers: the comma-separated items, each parsed as a T.
template <class T, class = std::enable_if_t<std::is_arithmetic_v<T>>>
void parse_value(const std::string& text, std::vector<T>& out) {
  std::vector<std::string> items;
  parse_value(text, items);
  out.clear();
  for (const auto& item : items) {
    T v{};
    try {
      parse_value(item, v);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument("item '" + item + "': " + e.what());
    }
    out.push_back(v);
  }
}
template <class T, class = std::enable_if_t<std::is_arithmetic_v<T>>>
std::string format_value(const std::vector<T>& v) {
  std::vector<std::string> items;
  for (const T& x : v) items.push_back(format_value(x));
  return format_value(items);
}
template <class T>
struct is_option_list : std::false_type {};
template <class T>
struct is_option_list<std::vector<T>> : std::true_type {};

// Enums by the names of their table (pipeline/base/named_enum.h).
template <class E, class = std::enable_if_t<std::is_enum_v<E>>>
std::string format_value(E v) {
  return name_of(v);
}
template <class E, class = std::enable_if_t<std::is_enum_v<E>>>
void parse_value(const std::string& text, E& out) {
  out = parse_name<E>(text);
}

template <class T>
using Check = std::function<std::string(const T&)>;

template <class T>
Check<T> at_least(T lo) {
  return [lo](const T& v) { return v < lo ? "must be at least " + format_value(lo) : std::string(); };
}
// Every item of a list of numbers at least `lo`.
template <class T>
Check<std::vector<T>> each_at_least(T lo) {
  return [lo](const std::vector<T>& v) {
    for (const T& x : v) {
      if (x < lo) return "every item must be at least " + format_value(lo) + " (got " + format_value(x) + ")";
    }
    return std::string();
  };
}
template <class T>
Check<T> in_range(T lo, T hi) {
  return [lo, hi](const T& v) {
    return (v < lo || v > hi) ? "must be between " + format_value(lo) + " and " + format_value(hi) : std::string();
  };
}

// What an option has besides name, type, help and check; named, so a binding reads
//   b.add("shard", &SampleOptions::shard, "...", {}, kField.with_alias("shard").as_transient());
struct FieldOptions {
  std::string alias;                 // short command-line name (--strict for scan.strict)
  std::vector<std::string> choices;  // string fields: the accepted values (enum fields take their table's)
  bool repeatable = false;           // each command-line occurrence adds one item
  bool transient = false;            // steers this invocation only: not hashed, not in config.ini

  FieldOptions with_alias(std::string name) const {
    auto f = *this;
    f.alias = std::move(name);
    return f;
  }
  FieldOptions with_choices(std::vector<std::string> accepted) const {
    auto f = *this;
    f.choices = std::move(accepted);
    return f;
  }
  FieldOptions as_repeatable() const {
    auto f = *this;
    f.repeatable = true;
    return f;
  }
  FieldOptions as_transient() const {
    auto f = *this;
    f.transient = true;
    return f;
  }
};
inline const FieldOptions kField{};
inline const FieldOptions kTransient = kField.as_transient();

// Declares (registry mode) or loads (config mode) the fields of an options struct `S`, which has
// `static constexpr const char* kGroup` and `static void bind(OptionBinder<S>&)`.
template <class S>
class OptionBinder {
 public:
  OptionBinder(OptionRegistry* registry, const Config* config, S* out)
      : registry_(registry), config_(config), out_(out) {}

  // A field `S` inherits (an options struct that extends a recipe of the models layer).
  template <class T, class B, class = std::enable_if_t<std::is_base_of_v<B, S> && !std::is_same_v<B, S>>>
  void add(std::string_view name, T B::*field, std::string help, Check<T> check = {}, FieldOptions extra = {}) {
    add(name, static_cast<T S::*>(field), std::move(help), std::move(check), std::move(extra));
  }

  template <class T>
  void add(std::string_view name, T S::*field, std::string help, Check<T> check = {}, FieldOptions extra = {}) {
    const std::string key = full_key(name);
    if (registry_) {
      const S defaults{};
      OptionInfo info;
      info.key = key;
      info.alias = extra.alias;
      info.help = std::move(help);
      info.type = type_name<T>(extra);
      info.default_text = format_value(defaults.*field);
      if constexpr (std::is_enum_v<T>) {
        info.choices = names_of(T{}).names();
      } else {
        info.choices = extra.choices;
      }
      info.repeatable = extra.repeatable;
      info.transient = extra.transient;
      auto choices = extra.choices;
      info.check = [check, choices](const std::string& text) -> std::string {
        T value{};
        try {
          parse_value(text, value);
        } catch (const std::invalid_argument& e) {
          return e.what();
        }
        if constexpr (std::is_same_v<T, std::string>) {
          if (!choices.empty() && std::find(choices.begin(), choices.end(), value) == choices.end()) {
            std::string accepted;
            for (const auto& c : choices) accepted += (accepted.empty() ? "" : ", ") + c;
            return "accepted values: " + accepted;
          }
        }
        return check ? check(value) : std::string();
      };
      registry_->declare(std::move(info));
    }
    if (config_) {
      const auto& items = config_->values(key);
      if constexpr (is_option_list<T>::value) {
        T list;
        for (const auto& item : items) {
          if constexpr (std::is_same_v<T, std::vector<std::string>>) {
            if (extra.repeatable) {
              list.push_back(item);
              continue;
            }
          }
          T part;
          parse_value(item, part);
          list.insert(list.end(), part.begin(), part.end());
        }
        out_->*field = list;
      } else if (!items.empty()) {
        parse_value(items.back(), out_->*field);
      }
    }
  }

 private:
  static std::string full_key(std::string_view name) {
    const std::string group = S::kGroup;
    return group.empty() ? std::string(name) : group + "." + std::string(name);
  }
  template <class T>
  static std::string type_name(const FieldOptions& extra) {
    if constexpr (std::is_same_v<T, bool>)
      return "bool";
    else if constexpr (std::is_same_v<T, std::int64_t> || std::is_same_v<T, int>)
      return "int";
    else if constexpr (std::is_same_v<T, double>)
      return "float";
    else if constexpr (std::is_same_v<T, std::vector<std::string>>)
      return "list";
    else if constexpr (std::is_same_v<T, std::vector<int>> || std::is_same_v<T, std::vector<std::int64_t>>)
      return "int list";
    else if constexpr (std::is_same_v<T, std::vector<double>>)
      return "float list";
    else if constexpr (std::is_enum_v<T>)
      return "choice";
    else
      return extra.choices.empty() ? "string" : "choice";
  }

  OptionRegistry* registry_;
  const Config* config_;
  S* out_;
};

template <class S>
void declare_options(OptionRegistry& registry) {
  OptionBinder<S> binder(&registry, nullptr, nullptr);
  S::bind(binder);
}

template <class S>
S load_options(const Config& config) {
  S out{};
  OptionBinder<S> binder(nullptr, &config, &out);
  S::bind(binder);
  return out;
}

}  // namespace augment
