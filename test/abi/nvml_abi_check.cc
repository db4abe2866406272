// Compiled (never run) against NVIDIA's own nvml.h by test/abi.test.ts: our declarations in native/nvml/nvml_api.h
// must have NVIDIA's sizes, field offsets and constant values for everything taskmeter uses.
// Declare the legacy (unversioned) entry points too, instead of macros that rename them to the newest version.
#define NVML_NO_UNVERSIONED_FUNC_DEFS
#include <nvml.h>

#include <cstddef>
#include <type_traits>

#include "nvml/nvml_api.h"

namespace ours = taskmeter::nvml;

#define SAME_SIZE(O, T) static_assert(sizeof(ours::O) == sizeof(T), "size of " #O " differs from " #T)
#define SAME_OFFSET(O, T, F) static_assert(offsetof(ours::O, F) == offsetof(T, F), "offset of " #O "." #F)
#define SAME_VALUE(O, T) static_assert(static_cast<long long>(ours::O) == static_cast<long long>(T), #O " != " #T)

SAME_SIZE(Return, nvmlReturn_t);
SAME_SIZE(Device, nvmlDevice_t);

SAME_SIZE(Memory, nvmlMemory_t);
SAME_OFFSET(Memory, nvmlMemory_t, total);
SAME_OFFSET(Memory, nvmlMemory_t, free);
SAME_OFFSET(Memory, nvmlMemory_t, used);

SAME_SIZE(MemoryV2, nvmlMemory_v2_t);
SAME_OFFSET(MemoryV2, nvmlMemory_v2_t, version);
SAME_OFFSET(MemoryV2, nvmlMemory_v2_t, total);
SAME_OFFSET(MemoryV2, nvmlMemory_v2_t, reserved);
SAME_OFFSET(MemoryV2, nvmlMemory_v2_t, free);
SAME_OFFSET(MemoryV2, nvmlMemory_v2_t, used);
SAME_VALUE(kMemoryV2Version, nvmlMemory_v2);

SAME_SIZE(ProcessInfoV1, nvmlProcessInfo_v1_t);
SAME_OFFSET(ProcessInfoV1, nvmlProcessInfo_v1_t, pid);
SAME_OFFSET(ProcessInfoV1, nvmlProcessInfo_v1_t, usedGpuMemory);
static_assert(sizeof(ours::ProcessInfoV1) == 16, "v1 entries are 16 bytes");

SAME_SIZE(ProcessInfoV2, nvmlProcessInfo_v2_t);
SAME_OFFSET(ProcessInfoV2, nvmlProcessInfo_v2_t, pid);
SAME_OFFSET(ProcessInfoV2, nvmlProcessInfo_v2_t, usedGpuMemory);
SAME_OFFSET(ProcessInfoV2, nvmlProcessInfo_v2_t, gpuInstanceId);
SAME_OFFSET(ProcessInfoV2, nvmlProcessInfo_v2_t, computeInstanceId);
// nvmlProcessInfo_t is what the _v3 calls take in this header.
SAME_SIZE(ProcessInfoV2, nvmlProcessInfo_t);
SAME_OFFSET(ProcessInfoV2, nvmlProcessInfo_t, pid);
SAME_OFFSET(ProcessInfoV2, nvmlProcessInfo_t, usedGpuMemory);
static_assert(sizeof(ours::ProcessInfoV2) == 24, "v2/v3 entries are 24 bytes");
static_assert(sizeof(ours::ProcessInfoV3Cc) == 32, "the 535.43-535.86 _v3 entries are 32 bytes");

SAME_SIZE(Utilization, nvmlUtilization_t);
SAME_OFFSET(Utilization, nvmlUtilization_t, gpu);
SAME_OFFSET(Utilization, nvmlUtilization_t, memory);

SAME_VALUE(kSuccess, NVML_SUCCESS);
SAME_VALUE(kErrorUninitialized, NVML_ERROR_UNINITIALIZED);
SAME_VALUE(kErrorInvalidArgument, NVML_ERROR_INVALID_ARGUMENT);
SAME_VALUE(kErrorNotSupported, NVML_ERROR_NOT_SUPPORTED);
SAME_VALUE(kErrorNoPermission, NVML_ERROR_NO_PERMISSION);
SAME_VALUE(kErrorAlreadyInitialized, NVML_ERROR_ALREADY_INITIALIZED);
SAME_VALUE(kErrorNotFound, NVML_ERROR_NOT_FOUND);
SAME_VALUE(kErrorInsufficientSize, NVML_ERROR_INSUFFICIENT_SIZE);
SAME_VALUE(kErrorInsufficientPower, NVML_ERROR_INSUFFICIENT_POWER);
SAME_VALUE(kErrorDriverNotLoaded, NVML_ERROR_DRIVER_NOT_LOADED);
SAME_VALUE(kErrorTimeout, NVML_ERROR_TIMEOUT);
SAME_VALUE(kErrorIrqIssue, NVML_ERROR_IRQ_ISSUE);
SAME_VALUE(kErrorLibraryNotFound, NVML_ERROR_LIBRARY_NOT_FOUND);
SAME_VALUE(kErrorFunctionNotFound, NVML_ERROR_FUNCTION_NOT_FOUND);
SAME_VALUE(kErrorCorruptedInforom, NVML_ERROR_CORRUPTED_INFOROM);
SAME_VALUE(kErrorGpuIsLost, NVML_ERROR_GPU_IS_LOST);
SAME_VALUE(kErrorResetRequired, NVML_ERROR_RESET_REQUIRED);
SAME_VALUE(kErrorOperatingSystem, NVML_ERROR_OPERATING_SYSTEM);
SAME_VALUE(kErrorLibRmVersionMismatch, NVML_ERROR_LIB_RM_VERSION_MISMATCH);
SAME_VALUE(kErrorInUse, NVML_ERROR_IN_USE);
SAME_VALUE(kErrorMemory, NVML_ERROR_MEMORY);
SAME_VALUE(kErrorNoData, NVML_ERROR_NO_DATA);
SAME_VALUE(kErrorUnknown, NVML_ERROR_UNKNOWN);

static_assert(ours::kValueNotAvailable == static_cast<unsigned long long>(NVML_VALUE_NOT_AVAILABLE), "NA");
SAME_VALUE(kUuidBufferSize, NVML_DEVICE_UUID_V2_BUFFER_SIZE);
SAME_VALUE(kNameBufferSize, NVML_DEVICE_NAME_V2_BUFFER_SIZE);
SAME_VALUE(kDriverVersionBufferSize, NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE);
SAME_VALUE(kNvmlVersionBufferSize, NVML_SYSTEM_NVML_VERSION_BUFFER_SIZE);

// The function-pointer types must accept NVIDIA's functions (same parameters, same return type).
static_assert(std::is_same<decltype(&nvmlInit_v2), nvmlReturn_t (*)(void)>::value, "nvmlInit_v2");
static_assert(std::is_same<decltype(&nvmlDeviceGetCount_v2), nvmlReturn_t (*)(unsigned int*)>::value, "count");
static_assert(std::is_same<decltype(&nvmlDeviceGetHandleByIndex_v2), nvmlReturn_t (*)(unsigned int, nvmlDevice_t*)>::value, "handle");
static_assert(std::is_same<decltype(&nvmlDeviceGetUUID), nvmlReturn_t (*)(nvmlDevice_t, char*, unsigned int)>::value, "uuid");
static_assert(std::is_same<decltype(&nvmlDeviceGetName), nvmlReturn_t (*)(nvmlDevice_t, char*, unsigned int)>::value, "name");
static_assert(std::is_same<decltype(&nvmlSystemGetDriverVersion), nvmlReturn_t (*)(char*, unsigned int)>::value, "driver");
static_assert(std::is_same<decltype(&nvmlDeviceGetMemoryInfo_v2), nvmlReturn_t (*)(nvmlDevice_t, nvmlMemory_v2_t*)>::value, "mem2");
static_assert(std::is_same<decltype(&nvmlDeviceGetMemoryInfo), nvmlReturn_t (*)(nvmlDevice_t, nvmlMemory_t*)>::value, "mem");
static_assert(std::is_same<decltype(&nvmlDeviceGetComputeRunningProcesses_v3), nvmlReturn_t (*)(nvmlDevice_t, unsigned int*, nvmlProcessInfo_t*)>::value, "procs3");
static_assert(std::is_same<decltype(&nvmlDeviceGetComputeRunningProcesses_v2), nvmlReturn_t (*)(nvmlDevice_t, unsigned int*, nvmlProcessInfo_v2_t*)>::value, "procs2");
static_assert(std::is_same<decltype(&nvmlDeviceGetComputeRunningProcesses), nvmlReturn_t (*)(nvmlDevice_t, unsigned int*, nvmlProcessInfo_v1_t*)>::value, "procs1");
static_assert(std::is_same<decltype(&nvmlDeviceGetGraphicsRunningProcesses_v3), nvmlReturn_t (*)(nvmlDevice_t, unsigned int*, nvmlProcessInfo_t*)>::value, "gprocs3");
static_assert(std::is_same<decltype(&nvmlDeviceGetUtilizationRates), nvmlReturn_t (*)(nvmlDevice_t, nvmlUtilization_t*)>::value, "util");
static_assert(std::is_same<decltype(&nvmlDeviceGetPowerUsage), nvmlReturn_t (*)(nvmlDevice_t, unsigned int*)>::value, "power");
static_assert(std::is_same<decltype(&nvmlDeviceGetTotalEnergyConsumption), nvmlReturn_t (*)(nvmlDevice_t, unsigned long long*)>::value, "energy");
static_assert(std::is_same<decltype(&nvmlErrorString), const char* (*)(nvmlReturn_t)>::value, "errorString");
static_assert(std::is_same<decltype(&nvmlInit), nvmlReturn_t (*)(void)>::value, "nvmlInit");
static_assert(std::is_same<decltype(&nvmlDeviceGetCount), nvmlReturn_t (*)(unsigned int*)>::value, "count v1");
static_assert(std::is_same<decltype(&nvmlDeviceGetHandleByIndex), nvmlReturn_t (*)(unsigned int, nvmlDevice_t*)>::value, "handle v1");

// Issue 12: MIG, accounting mode, per-process utilization, field values (instant power), MPS lists.
SAME_SIZE(AccountingStats, nvmlAccountingStats_t);
SAME_OFFSET(AccountingStats, nvmlAccountingStats_t, gpuUtilization);
SAME_OFFSET(AccountingStats, nvmlAccountingStats_t, memoryUtilization);
SAME_OFFSET(AccountingStats, nvmlAccountingStats_t, maxMemoryUsage);
SAME_OFFSET(AccountingStats, nvmlAccountingStats_t, time);
SAME_OFFSET(AccountingStats, nvmlAccountingStats_t, startTime);
SAME_OFFSET(AccountingStats, nvmlAccountingStats_t, isRunning);
SAME_OFFSET(AccountingStats, nvmlAccountingStats_t, reserved);

SAME_SIZE(ProcessUtilizationSample, nvmlProcessUtilizationSample_t);
SAME_OFFSET(ProcessUtilizationSample, nvmlProcessUtilizationSample_t, pid);
SAME_OFFSET(ProcessUtilizationSample, nvmlProcessUtilizationSample_t, timeStamp);
SAME_OFFSET(ProcessUtilizationSample, nvmlProcessUtilizationSample_t, smUtil);
SAME_OFFSET(ProcessUtilizationSample, nvmlProcessUtilizationSample_t, memUtil);
SAME_OFFSET(ProcessUtilizationSample, nvmlProcessUtilizationSample_t, encUtil);
SAME_OFFSET(ProcessUtilizationSample, nvmlProcessUtilizationSample_t, decUtil);

SAME_SIZE(Value, nvmlValue_t);
SAME_SIZE(FieldValue, nvmlFieldValue_t);
SAME_OFFSET(FieldValue, nvmlFieldValue_t, fieldId);
SAME_OFFSET(FieldValue, nvmlFieldValue_t, scopeId);
SAME_OFFSET(FieldValue, nvmlFieldValue_t, timestamp);
SAME_OFFSET(FieldValue, nvmlFieldValue_t, latencyUsec);
SAME_OFFSET(FieldValue, nvmlFieldValue_t, valueType);
SAME_OFFSET(FieldValue, nvmlFieldValue_t, nvmlReturn);
SAME_OFFSET(FieldValue, nvmlFieldValue_t, value);
static_assert(sizeof(int) == sizeof(nvmlValueType_t), "valueType is int-sized");
SAME_VALUE(kValueTypeUnsignedInt, NVML_VALUE_TYPE_UNSIGNED_INT);
// NVML_FI_DEV_POWER_INSTANT (186) is newer than this CUDA 11.8-era header (NVML_FI_MAX is 167 here): only checked to
// lie beyond what this header knows, so it cannot collide with an older field id.
static_assert(ours::kFieldPowerInstant >= NVML_FI_MAX, "NVML_FI_DEV_POWER_INSTANT is a newer field id");

static_assert(sizeof(int) == sizeof(nvmlEnableState_t), "nvmlEnableState_t is int-sized");
SAME_VALUE(kEnableStateEnabled, NVML_FEATURE_ENABLED);
SAME_VALUE(kMigModeEnabled, NVML_DEVICE_MIG_ENABLE);

static_assert(std::is_same<decltype(&nvmlDeviceGetMigMode), nvmlReturn_t (*)(nvmlDevice_t, unsigned int*, unsigned int*)>::value, "mig mode");
static_assert(std::is_same<decltype(&nvmlDeviceGetMaxMigDeviceCount), nvmlReturn_t (*)(nvmlDevice_t, unsigned int*)>::value, "max mig");
static_assert(std::is_same<decltype(&nvmlDeviceGetMigDeviceHandleByIndex), nvmlReturn_t (*)(nvmlDevice_t, unsigned int, nvmlDevice_t*)>::value, "mig handle");
static_assert(std::is_same<decltype(&nvmlDeviceGetDeviceHandleFromMigDeviceHandle), nvmlReturn_t (*)(nvmlDevice_t, nvmlDevice_t*)>::value, "mig parent");
static_assert(std::is_same<decltype(&nvmlDeviceGetGpuInstanceId), nvmlReturn_t (*)(nvmlDevice_t, unsigned int*)>::value, "gi");
static_assert(std::is_same<decltype(&nvmlDeviceGetComputeInstanceId), nvmlReturn_t (*)(nvmlDevice_t, unsigned int*)>::value, "ci");
static_assert(std::is_same<decltype(&nvmlDeviceGetAccountingMode), nvmlReturn_t (*)(nvmlDevice_t, nvmlEnableState_t*)>::value, "acct mode");
static_assert(std::is_same<decltype(&nvmlDeviceGetAccountingStats), nvmlReturn_t (*)(nvmlDevice_t, unsigned int, nvmlAccountingStats_t*)>::value, "acct stats");
static_assert(std::is_same<decltype(&nvmlDeviceGetProcessUtilization), nvmlReturn_t (*)(nvmlDevice_t, nvmlProcessUtilizationSample_t*, unsigned int*, unsigned long long)>::value, "putil");
static_assert(std::is_same<decltype(&nvmlDeviceGetFieldValues), nvmlReturn_t (*)(nvmlDevice_t, int, nvmlFieldValue_t*)>::value, "field values");
static_assert(std::is_same<decltype(&nvmlDeviceGetMPSComputeRunningProcesses_v3), nvmlReturn_t (*)(nvmlDevice_t, unsigned int*, nvmlProcessInfo_t*)>::value, "mps3");
static_assert(std::is_same<decltype(&nvmlDeviceGetMPSComputeRunningProcesses_v2), nvmlReturn_t (*)(nvmlDevice_t, unsigned int*, nvmlProcessInfo_v2_t*)>::value, "mps2");
// Our pointer types take our structs of the same layout (asserted above) in NVIDIA's parameter positions.
static_assert(std::is_same<ours::DeviceGetMigModeFn, ours::Return (*)(ours::Device, unsigned int*, unsigned int*)>::value, "ours mig");
// Not in this header (newer than CUDA 11.8): nvmlDeviceGetConfComputeMemSizeInfo and
// nvmlDeviceGetRunningProcessDetailList are only looked up by name (their presence decides the _v3 entry size).
