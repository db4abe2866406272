/* A probe for `npm run test:ports` under Wine: writes to the file argv[1] whether this process is in a job object
 * and the pids the job holds (JobObjectBasicProcessIdList of the job we are in), one line:
 * "pid=<own pid> parent=<pid> in_job=<0|1> job_pids=<a,b,c>". Run as a descendant of measureCommand(), it shows
 * that descendants start inside the command's job (the job is ours when it holds the command's own pid).
 * `injob.exe --spew N`: writes N lines "e<i>" to stderr first, then N lines "o<i>" to stdout (WriteFile on the
 * standard handles): with pipes for both, it finishes only if the reader drains stderr while it waits for stdout. */
#include <windows.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tlhelp32.h>

static int spew(int n) {
  char line[32];
  for (int s = 0; s < 2; s++) {
    HANDLE h = GetStdHandle(s == 0 ? STD_ERROR_HANDLE : STD_OUTPUT_HANDLE);
    for (int i = 1; i <= n; i++) {
      int len = snprintf(line, sizeof line, "%c%d\r\n", s == 0 ? 'e' : 'o', i);
      DWORD done = 0;
      if (!WriteFile(h, line, (DWORD)len, &done, NULL) || done != (DWORD)len) return 4;
    }
  }
  return 0;
}

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  if (argc == 3 && strcmp(argv[1], "--spew") == 0) return spew(atoi(argv[2]));
  BOOL in_job = FALSE;
  IsProcessInJob(GetCurrentProcess(), NULL, &in_job);
  union { JOBOBJECT_BASIC_PROCESS_ID_LIST list; char buf[sizeof(JOBOBJECT_BASIC_PROCESS_ID_LIST) + 256 * sizeof(ULONG_PTR)]; } u;
  memset(&u, 0, sizeof u);
  u.list.NumberOfAssignedProcesses = 256;
  BOOL listed = QueryInformationJobObject(NULL, JobObjectBasicProcessIdList, &u.list, sizeof u, NULL);
  DWORD self = GetCurrentProcessId(), parent = 0;
  HANDLE snap = CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0);
  PROCESSENTRY32 e;
  e.dwSize = sizeof e;
  for (BOOL more = Process32First(snap, &e); more; more = Process32Next(snap, &e))
    if (e.th32ProcessID == self) parent = e.th32ParentProcessID;
  CloseHandle(snap);
  FILE* f = fopen(argv[1], "w");
  if (!f) return 3;
  fprintf(f, "pid=%lu parent=%lu in_job=%d job_pids=", (unsigned long)self, (unsigned long)parent, in_job ? 1 : 0);
  if (listed)
    for (DWORD i = 0; i < u.list.NumberOfProcessIdsInList; i++)
      fprintf(f, "%s%lu", i ? "," : "", (unsigned long)u.list.ProcessIdList[i]);
  fprintf(f, "\n");
  fclose(f);
  return 0;
}
