/* Test-only LD_PRELOAD library: kills the process at its K-th rename, the step by which every
 * augment stage makes a file or folder durable and visible (temp file + rename).
 *   AUGMENT_TEST_KILL_AT_RENAME=K  SIGKILL just before the K-th rename (1-based) of the process
 *   AUGMENT_TEST_RENAME_LOG=FILE   append "K old -> new" for every rename (to count and name them)
 * The count is shared by all threads, so a run is cut at one point of its sequence of renames
 * whichever thread reaches it. Never part of the product: built for the tests only. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static atomic_long renames;

static void before_rename(const char* from, const char* to) {
  const long k = atomic_fetch_add(&renames, 1) + 1;
  const char* log = getenv("AUGMENT_TEST_RENAME_LOG");
  if (log && *log) {
    const int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) {
      char line[8192];
      const int n = snprintf(line, sizeof line, "%ld %s -> %s\n", k, from, to);
      if (n > 0) (void)!write(fd, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
      close(fd);
    }
  }
  const char* at = getenv("AUGMENT_TEST_KILL_AT_RENAME");
  if (at && *at && atol(at) == k) raise(SIGKILL);
}

int rename(const char* from, const char* to) {
  static int (*real)(const char*, const char*);
  if (!real) real = (int (*)(const char*, const char*))dlsym(RTLD_NEXT, "rename");
  before_rename(from, to);
  return real(from, to);
}

int renameat(int fromfd, const char* from, int tofd, const char* to) {
  static int (*real)(int, const char*, int, const char*);
  if (!real) real = (int (*)(int, const char*, int, const char*))dlsym(RTLD_NEXT, "renameat");
  before_rename(from, to);
  return real(fromfd, from, tofd, to);
}

int renameat2(int fromfd, const char* from, int tofd, const char* to, unsigned int flags) {
  static int (*real)(int, const char*, int, const char*, unsigned int);
  if (!real) real = (int (*)(int, const char*, int, const char*, unsigned int))dlsym(RTLD_NEXT, "renameat2");
  before_rename(from, to);
  return real(fromfd, from, tofd, to, flags);
}
