// CUDA's own numbering of the visible GPUs. With different GPU models and CUDA_DEVICE_ORDER=FASTEST_FIRST (CUDA's
// default) NVML cannot tell which GPU CUDA calls 0, 1 …; the CUDA driver library (libcuda) can. It is asked in a
// helper process — never in the measured one, where cuInit would add memory and threads — that runs this same addon
// under node with the measured process's CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER.
#pragma once
#include <string>
#include <vector>

#include "loader.h"

namespace taskmeter {
namespace nvml {

// In the helper: loads libcuda (library, or libcuda.so.1), cuInit(0), and lists the visible devices' UUIDs in
// CUDA's order as 32 lowercase hex digits (no prefix: CUDA's bytes are the same for GPU- and MIG- UUIDs).
bool CudaVisibleUuids(const std::string& library, std::vector<std::string>* out, std::string* why);

// In the measured process (GPU thread): runs the helper (env.node_path, env.addon_path), waits at most timeout_ms.
bool CudaOrderFromHelper(const Env& env, int timeout_ms, std::vector<std::string>* out, std::string* why);

// "GPU-1a2b…" or "MIG-1a2b…" → "1a2b…" (hex digits only, lowercase).
std::string UuidHex(const std::string& nvml_uuid);

}  // namespace nvml
}  // namespace taskmeter
