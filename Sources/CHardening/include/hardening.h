#pragma once
/// Marks the process non-dumpable (no core dumps, no ptrace by other users, /proc/self owned by
/// root) and sets the core-file limit to 0, so a crash never writes the keys in memory to disk.
/// Returns 0 on success, -1 with errno set.
int twin_forbid_core_dumps(void);

#include <stddef.h>
#include <stdint.h>
/// libFuzzer's driver (linked only into the fuzzing build, `-sanitize=fuzzer`; see scripts/fuzz):
/// parses libFuzzer's options from argv and calls `callback` with each input.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

/// Names the calling thread as `top -H`, `ps -L` and /proc show it (at most 15 bytes are kept).
/// Returns 0 on success, -1 with errno set.
int twin_name_thread(const char *name);
