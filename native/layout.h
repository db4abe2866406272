// One definition of every layout shared with JavaScript: each Float64Array slot order and each reason code is an
// X-macro list, `X(Name)` one entry per line in index order, declared beside the code that fills it (proc/proc.h,
// sampler.h, spawn.h, nvml/gpu.h). From a list, TASKMETER_ENUM makes the C++ enum (kName = index, then the count),
// and the addon exports NAME → index (CamelCase → UPPER_SNAKE, after an optional prefix: kGsPowerWatts ↔
// GS_POWER_WATTS) under `layouts`, which src/binding.ts checks its own names against at load.
// Adding a slot: one X(...) line at the end of the list here, one name at the end of the list in src/binding.ts.
#pragma once

#define TASKMETER_ENUM_ENTRY(name) k##name,
#define TASKMETER_ENUM_NAME(name) #name,
// enum Type : int { kA, kB, …, kCount }.
#define TASKMETER_ENUM(Type, LIST, count) enum Type : int { LIST(TASKMETER_ENUM_ENTRY) count };
// The entries' names without the k ("A", "B", …), in index order, for the exported map.
#define TASKMETER_ENUM_NAMES(LIST) \
  { LIST(TASKMETER_ENUM_NAME) }
