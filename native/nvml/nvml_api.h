// Our own minimal declarations of the NVML types, constants and entry points taskmeter uses, so that building needs
// no nvml.h. test/abi/nvml_abi_check.cc static_asserts every size, offset and constant here against NVIDIA's header.
#pragma once
#include <cstddef>
#include <cstdint>

namespace taskmeter {
namespace nvml {

using Return = int;  // nvmlReturn_t is a C enum: int-sized on every platform NVML ships for
using Device = struct DeviceOpaque*;

enum : Return {
  kSuccess = 0,
  kErrorUninitialized = 1,
  kErrorInvalidArgument = 2,
  kErrorNotSupported = 3,
  kErrorNoPermission = 4,
  kErrorAlreadyInitialized = 5,
  kErrorNotFound = 6,
  kErrorInsufficientSize = 7,
  kErrorInsufficientPower = 8,
  kErrorDriverNotLoaded = 9,
  kErrorTimeout = 10,
  kErrorIrqIssue = 11,
  kErrorLibraryNotFound = 12,
  kErrorFunctionNotFound = 13,
  kErrorCorruptedInforom = 14,
  kErrorGpuIsLost = 15,
  kErrorResetRequired = 16,
  kErrorOperatingSystem = 17,
  kErrorLibRmVersionMismatch = 18,
  kErrorInUse = 19,
  kErrorMemory = 20,
  kErrorNoData = 21,
  kErrorUnknown = 999,
};

// NVML_VALUE_NOT_AVAILABLE, as it appears in unsigned long long fields.
constexpr unsigned long long kValueNotAvailable = ~0ULL;

constexpr unsigned kUuidBufferSize = 96;           // NVML_DEVICE_UUID_V2_BUFFER_SIZE
constexpr unsigned kNameBufferSize = 96;           // NVML_DEVICE_NAME_V2_BUFFER_SIZE
constexpr unsigned kDriverVersionBufferSize = 80;  // NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE
constexpr unsigned kNvmlVersionBufferSize = 80;    // NVML_SYSTEM_NVML_VERSION_BUFFER_SIZE

struct Memory {  // nvmlMemory_t
  unsigned long long total;
  unsigned long long free;
  unsigned long long used;
};

struct MemoryV2 {  // nvmlMemory_v2_t
  unsigned int version;
  unsigned long long total;
  unsigned long long reserved;
  unsigned long long free;
  unsigned long long used;
};
// nvmlMemory_v2: NVML_STRUCT_VERSION(Memory, 2) = sizeof | (2 << 24)
constexpr unsigned int kMemoryV2Version = static_cast<unsigned int>(sizeof(MemoryV2) | (2u << 24));

struct ProcessInfoV1 {  // nvmlProcessInfo_v1_t: 16 bytes
  unsigned int pid;
  unsigned long long usedGpuMemory;
};

struct ProcessInfoV2 {  // nvmlProcessInfo_v2_t, and nvmlProcessInfo_t of the _v3 calls: 24 bytes
  unsigned int pid;
  unsigned long long usedGpuMemory;
  unsigned int gpuInstanceId;
  unsigned int computeInstanceId;
};

// Drivers 535.43–535.86 wrote _v3 entries with one more field (usedGpuCcProtectedMemory) under the same symbol name.
struct ProcessInfoV3Cc {
  unsigned int pid;
  unsigned long long usedGpuMemory;
  unsigned int gpuInstanceId;
  unsigned int computeInstanceId;
  unsigned long long usedGpuCcProtectedMemory;
};

struct Utilization {  // nvmlUtilization_t
  unsigned int gpu;
  unsigned int memory;
};

// nvmlAccountingStats_t: a process's lifetime figures, kept by the driver while accounting mode is on.
struct AccountingStats {
  unsigned int gpuUtilization;
  unsigned int memoryUtilization;
  unsigned long long maxMemoryUsage;  // the process's high-water mark of GPU memory, bytes
  unsigned long long time;
  unsigned long long startTime;
  unsigned int isRunning;
  unsigned int reserved[5];
};

// nvmlProcessUtilizationSample_t: one sample of one process's utilization.
struct ProcessUtilizationSample {
  unsigned int pid;
  unsigned long long timeStamp;  // CPU time, µs since the epoch
  unsigned int smUtil;
  unsigned int memUtil;
  unsigned int encUtil;
  unsigned int decUtil;
};

// nvmlValue_t / nvmlFieldValue_t (nvmlDeviceGetFieldValues).
union Value {
  double dVal;
  unsigned int uiVal;
  unsigned long ulVal;
  unsigned long long ullVal;
  signed long long sllVal;
};
struct FieldValue {
  unsigned int fieldId;
  unsigned int scopeId;
  long long timestamp;
  long long latencyUsec;
  int valueType;  // nvmlValueType_t
  Return nvmlReturn;
  Value value;
};
constexpr int kValueTypeUnsignedInt = 1;  // NVML_VALUE_TYPE_UNSIGNED_INT
// NVML_FI_DEV_POWER_INSTANT (CUDA 12.x headers; not in the 11.8-era header the ABI check compiles against).
constexpr unsigned int kFieldPowerInstant = 186;
constexpr int kEnableStateEnabled = 1;       // NVML_FEATURE_ENABLED
constexpr unsigned int kMigModeEnabled = 1;  // NVML_DEVICE_MIG_ENABLE
// gpuInstanceId/computeInstanceId of an entry on a GPU without MIG.
constexpr unsigned int kNoInstanceId = 0xFFFFFFFFu;

using InitFn = Return (*)();
using ShutdownFn = Return (*)();
using ErrorStringFn = const char* (*)(Return);
using SystemGetStringFn = Return (*)(char*, unsigned int);
using DeviceGetCountFn = Return (*)(unsigned int*);
using DeviceGetHandleByIndexFn = Return (*)(unsigned int, Device*);
using DeviceGetStringFn = Return (*)(Device, char*, unsigned int);
using DeviceGetMemoryInfoFn = Return (*)(Device, Memory*);
using DeviceGetMemoryInfoV2Fn = Return (*)(Device, MemoryV2*);
// The process-list calls take entries of a size that depends on the symbol's version: kept as void* here and
// called with the right stride by gpu.cc.
using DeviceGetProcessesFn = Return (*)(Device, unsigned int*, void*);
using DeviceGetUtilizationRatesFn = Return (*)(Device, Utilization*);
using DeviceGetUintFn = Return (*)(Device, unsigned int*);
using DeviceGetUllFn = Return (*)(Device, unsigned long long*);
using DeviceGetIntFn = Return (*)(Device, int*);  // nvmlEnableState_t out-parameters
using DeviceGetMigModeFn = Return (*)(Device, unsigned int*, unsigned int*);
using DeviceGetMigDeviceHandleByIndexFn = Return (*)(Device, unsigned int, Device*);
using DeviceGetDeviceHandleFromMigDeviceHandleFn = Return (*)(Device, Device*);
using DeviceGetAccountingStatsFn = Return (*)(Device, unsigned int, AccountingStats*);
using DeviceGetProcessUtilizationFn = Return (*)(Device, ProcessUtilizationSample*, unsigned int*, unsigned long long);
using DeviceGetFieldValuesFn = Return (*)(Device, int, FieldValue*);

}  // namespace nvml
}  // namespace taskmeter
