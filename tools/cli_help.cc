#include "tools/cli_help.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"

namespace fedsim {
namespace {

std::string TypeName(const absl::CommandLineFlag& flag) {
  if (flag.IsOfType<bool>()) return "bool";
  if (flag.IsOfType<int>() || flag.IsOfType<long>() || flag.IsOfType<long long>()) {
    return "int";
  }
  if (flag.IsOfType<double>() || flag.IsOfType<float>()) return "number";
  return "string";
}

// Wraps `text` at 72 columns, each line indented by `indent` spaces.
void PrintWrapped(std::FILE* out, absl::string_view text, int indent) {
  constexpr std::size_t kWidth = 72;
  std::string line;
  for (absl::string_view word : absl::StrSplit(text, ' ', absl::SkipEmpty())) {
    if (!line.empty() && line.size() + 1 + word.size() > kWidth) {
      std::fprintf(out, "%*s%s\n", indent, "", line.c_str());
      line.clear();
    }
    if (!line.empty()) line += ' ';
    line.append(word.data(), word.size());
  }
  if (!line.empty()) std::fprintf(out, "%*s%s\n", indent, "", line.c_str());
}

}  // namespace

bool WantsHelp(int argc, char** argv, int first) {
  for (int i = first; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    if (arg == "--") return false;
    if (arg == "-h" || arg == "-help" || arg == "--help" || arg == "--helpfull" ||
        arg == "--helpshort" || arg == "--helppackage" ||
        absl::StartsWith(arg, "--help=") || absl::StartsWith(arg, "-help=")) {
      return true;
    }
  }
  return false;
}

std::vector<std::string> FlagsDefinedIn(absl::string_view file_suffix) {
  std::vector<std::string> names;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (absl::EndsWith(flag->Filename(), file_suffix)) names.emplace_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

void PrintHelp(std::FILE* out, absl::string_view usage,
               const std::vector<std::string>& flags) {
  std::fprintf(out, "%.*s\n", static_cast<int>(usage.size()), usage.data());
  if (flags.empty()) return;
  std::fprintf(out, "\nflags:\n");
  for (const std::string& name : flags) {
    const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr) continue;
    const std::string type = TypeName(*flag);
    std::string value = flag->DefaultValue();
    if (type == "string") value = "\"" + value + "\"";
    std::fprintf(out, "  --%s=%s (%s)\n", name.c_str(), value.c_str(), type.c_str());
    PrintWrapped(out, flag->Help(), 6);
  }
}

std::vector<std::string> TakeConfigOverrides(int& argc, char** argv) {
  std::vector<std::string> out;
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--set" || a == "-set") {
      out.push_back(i + 1 < argc ? argv[++i] : "");
    } else if (a.rfind("--set=", 0) == 0 || a.rfind("-set=", 0) == 0) {
      out.push_back(a.substr(a.find('=') + 1));
    } else {
      argv[kept++] = argv[i];
    }
  }
  argc = kept;
  argv[argc] = nullptr;
  return out;
}

}  // namespace fedsim
