// File: common/config/config.h
//
// Loading, defaulting and validating experiment configs.
//
// Users write YAML whose keys are the field names of
// fedsim.v1.ExperimentConfig (proto/fedsim/v1/config.proto). The YAML tree is
// mapped onto the proto through its descriptor, so every unknown key, wrong
// type and bad value is reported with its full key path. Every error is one
// line of the form "config: <key path> = <value>; <rule>" and has code
// kInvalidArgument (kNotFound for a missing file).
#ifndef FEDSIM_COMMON_CONFIG_CONFIG_H_
#define FEDSIM_COMMON_CONFIG_CONFIG_H_

#include <string>
#include <vector>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fedsim/v1/config.pb.h"
#include "fedsim/v1/options.pb.h"

namespace fedsim {

// The traits declared on `name`'s enum value in config.proto (family,
// what composes with it); empty traits (FAMILY_UNSPECIFIED) for
// NAME_UNSPECIFIED or a value the schema does not have.
const v1::AlgorithmTraits& AlgorithmTraitsOf(v1::AlgorithmConfig::Name name);

// The config spelling of an algorithm (algorithm.name: "fedavg").
std::string AlgorithmConfigName(v1::AlgorithmConfig::Name name);

// True for the algorithms of FAMILY_ASYNC, which run on the virtual or
// the wall clock (clock_fedavg, async_fedavg, fedfix, fedbuff;
// docs/async.md).
bool IsAsyncAlgorithm(v1::AlgorithmConfig::Name name);

// The default async.ticks_per_unit of the F-X scenario with n clients and
// X = fx_percent (docs/async.md, "Exact times"): the smallest multiple of
// 10^6 in which every tau_i = 1 - i (X/100) / (n - 1) is a whole number of
// ticks, so that the schedule (ties, windows, the horizon) is computed
// exactly, as in rational arithmetic. Decimal constants with up to six
// decimals (window, horizon, X itself) are whole ticks too. 10^6 when X
// has more than six decimals or the exact tick would exceed 10^9 (the times
// are then rounded to the nearest tick).
std::int64_t FxTicksPerUnit(std::int64_t n, double fx_percent);

// Parses YAML text onto an ExperimentConfig without defaults or validation.
absl::StatusOr<v1::ExperimentConfig> ParseConfigYaml(absl::string_view yaml,
                                                     const std::vector<std::string>& overrides = {});

// Fills every unset field with its default: the ones declared on the
// fields of config.proto (FieldRule.default), then those that depend on
// other fields (FieldRule.default_rule says how), by section. Creates every
// section that has a default, so config.json shows them. Idempotent.
void ApplyDefaults(v1::ExperimentConfig& config);

// Checks a defaulted config: first the ranges declared on the fields
// (FieldRule.min/max, every value in field order: "config: KEY = VALUE;
// must be OP BOUND"), then the rules that involve several fields, by
// section. Returns the first violation.
absl::Status ValidateConfig(const v1::ExperimentConfig& config);

// Reads `path`, parses, applies defaults and validates.
absl::StatusOr<v1::ExperimentConfig> LoadConfigFile(const std::string& path);

// Parses, applies defaults and validates YAML text.
absl::StatusOr<v1::ExperimentConfig> LoadConfigText(absl::string_view yaml);

// The same, with command-line overrides ("fedsim run CONFIG --set
// KEY=VALUE"): each "section.key=value" replaces (or adds) that key of the
// YAML before it is read, so an override is checked exactly as the file's
// own value would be, with the same one-line errors. VALUE is YAML: a
// scalar (0.1, fedavg, true), a list ([0.1, 0.2]) or a map ({mu: 0.01}).
// Overrides apply in order (a later one wins). A malformed override
// ("no =", an empty key, a key below a scalar) is kInvalidArgument naming
// it.
absl::StatusOr<v1::ExperimentConfig> LoadConfigFile(const std::string& path,
                                                    const std::vector<std::string>& overrides);
absl::StatusOr<v1::ExperimentConfig> LoadConfigText(absl::string_view yaml,
                                                    const std::vector<std::string>& overrides);

// The config as JSON (field names as in the proto, every field printed).
// JSON is YAML, so the output loads back with LoadConfigFile.
std::string ConfigToJson(const v1::ExperimentConfig& config);

// Every key of the schema as a Markdown table (key, type, default, range),
// from the options on config.proto's fields (`fedsim config --fields`; the
// table of docs/config.md, which a test keeps equal to it).
std::string ConfigFieldTable();

}  // namespace fedsim

#endif  // FEDSIM_COMMON_CONFIG_CONFIG_H_
