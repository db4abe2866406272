/* For the Windows build of the fake NVML (fake_nvml_win32.c): its call log records the calling thread's id. */
#pragma once
#include <windows.h>
#define SYS_gettid 0
static inline long syscall(long number) { (void)number; return (long)GetCurrentThreadId(); }
