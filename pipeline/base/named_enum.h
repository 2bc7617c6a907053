// An enum and the names users type for it, in one table: options parse and print through it,
// `augment help` and option checks list its names, and files store the names. Each enum users
// name declares, next to the enum,
//   enum class Fit { kCrop, kPad, kStretch, kLast = kStretch };
//   inline constexpr NameTable<Fit, 3> kFitNames{{{{Fit::kCrop, "crop"}, {Fit::kPad, "pad"}, ...}}};
//   static_assert(kFitNames.complete());
//   constexpr const auto& names_of(Fit) { return kFitNames; }  // found by argument lookup
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace augment {

template <class E, std::size_t N>
struct NameTable {
  std::array<std::pair<E, std::string_view>, N> entries;

  // Every enumerator from the first to E::kLast has its entry, in order: a new enumerator without
  // a name fails to compile.
  constexpr bool complete() const {
    if (static_cast<std::size_t>(E::kLast) + 1 != N) return false;
    for (std::size_t i = 0; i < N; ++i) {
      if (static_cast<std::size_t>(entries[i].first) != i || entries[i].second.empty()) return false;
    }
    return true;
  }
  constexpr std::string_view name(E e) const { return entries[static_cast<std::size_t>(e)].second; }
  constexpr std::optional<E> parse(std::string_view text) const {
    for (const auto& [value, n] : entries) {
      if (n == text) return value;
    }
    return std::nullopt;
  }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& entry : entries) out.emplace_back(entry.second);
    return out;
  }
  // "a, b, c", for messages.
  std::string list() const {
    std::string out;
    for (const auto& entry : entries) out += (out.empty() ? "" : ", ") + std::string(entry.second);
    return out;
  }
};

template <class E, class = std::enable_if_t<std::is_enum_v<E>>>
std::string name_of(E value) {
  return std::string(names_of(value).name(value));
}

// Parses a name; throws std::invalid_argument listing the accepted ones.
template <class E, class = std::enable_if_t<std::is_enum_v<E>>>
E parse_name(std::string_view text) {
  const auto& table = names_of(E{});
  if (const auto value = table.parse(text)) return *value;
  throw std::invalid_argument("accepted values: " + table.list());
}

}  // namespace augment
