// Fault-injectable file layer (see io.h). The countdown is one atomic shared by all threads.
// SPDX-License-Identifier: MIT
#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static _Atomic long g_fail_after = -1;
static _Atomic long g_calls;

// True when this call must fail (consumes one step of the countdown).
static bool inject(void) {
    atomic_fetch_add(&g_calls, 1);
    long n = atomic_load(&g_fail_after);
    while (n >= 0) {
        if (atomic_compare_exchange_weak(&g_fail_after, &n, n - 1)) {
            if (n == 0) {
                errno = EIO;
                return true;
            }
            return false;
        }
    }
    return false;
}

void lfmd_io_fail_after(long n) { atomic_store(&g_fail_after, n); }
long lfmd_io_calls(void) { return atomic_load(&g_calls); }

int lfmd_io_open(const char *path, int flags) {
    if (inject()) return -1;
    return open(path, flags | O_CLOEXEC);
}

ssize_t lfmd_io_pread(int fd, void *buf, size_t n, off_t off) {
    if (inject()) return -1;
    return pread(fd, buf, n, off);
}

int lfmd_io_pread_full(int fd, void *buf, size_t n, off_t off) {
    size_t done = 0;
    while (done < n) {
        ssize_t r = lfmd_io_pread(fd, (char *)buf + done, n - done, off + (off_t)done);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        done += (size_t)r;
    }
    return 0;
}

int lfmd_io_read_full(int fd, void *buf, size_t n) {
    size_t done = 0;
    while (done < n) {
        ssize_t r = inject() ? -1 : read(fd, (char *)buf + done, n - done);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        done += (size_t)r;
    }
    return 0;
}

static _Atomic bool g_copy_maps;

void lfmd_io_set_copy_maps(bool on) { atomic_store(&g_copy_maps, on); }
bool lfmd_io_copy_maps(void) { return atomic_load(&g_copy_maps); }

// Readers of copy_map: each claims 64 MiB chunks until none is left (the time goes to zeroing
// fresh huge pages and copying from the page cache, both of which spread over cores).
struct copy_job {
    int fd;
    uint8_t *dst;
    size_t len;
    _Atomic size_t next;
    _Atomic int failed;
};

static void *copy_worker(void *arg) {
    struct copy_job *j = arg;
    const size_t chunk = (size_t)64 << 20;
    for (;;) {
        size_t off = atomic_fetch_add(&j->next, chunk);
        if (off >= j->len || atomic_load(&j->failed)) return NULL;
        size_t n = j->len - off < chunk ? j->len - off : chunk;
        if (lfmd_io_pread_full(j->fd, j->dst + off, n, (off_t)off) != 0) {
            atomic_store(&j->failed, errno ? errno : EIO);
            return NULL;
        }
    }
}

// An anonymous copy of the file at a 2 MiB-aligned address (huge pages need the alignment).
static void *copy_map(int fd, size_t len) {
    const size_t huge = (size_t)2 << 20;
    if (len == 0 || len > SIZE_MAX - huge) {
        errno = EINVAL;
        return MAP_FAILED;
    }
    uint8_t *r = mmap(NULL, len + huge, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r == MAP_FAILED) return MAP_FAILED;
    uint8_t *a = (uint8_t *)(((uintptr_t)r + huge - 1) & ~(uintptr_t)(huge - 1));
    if (a > r) munmap(r, (size_t)(a - r));
    if (a + len < r + len + huge) munmap(a + len, (size_t)(r + len + huge - (a + len)));
    if (mprotect(a, len, PROT_READ | PROT_WRITE) != 0) goto fail;
    (void)madvise(a, len, MADV_HUGEPAGE); // best effort: 4 KiB pages still work
    struct copy_job j = {.fd = fd, .dst = a, .len = len};
    pthread_t th[3];
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int nth = ncpu > 4 ? 3 : ncpu > 1 ? (int)ncpu - 1 : 0, started = 0;
    for (int i = 0; i < nth && len > ((size_t)64 << 20); i++, started++)
        if (pthread_create(&th[i], NULL, copy_worker, &j) != 0) break;
    copy_worker(&j);
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    if (atomic_load(&j.failed)) {
        errno = atomic_load(&j.failed);
        goto fail;
    }
    if (mprotect(a, len, PROT_READ) != 0) goto fail;
    return a;
fail:;
    int e = errno;
    munmap(a, len);
    errno = e;
    return MAP_FAILED;
}

void *lfmd_io_mmap(int fd, size_t len) {
    if (inject()) return MAP_FAILED;
    if (atomic_load(&g_copy_maps)) return copy_map(fd, len);
    return mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
}

void *lfmd_io_mmap_file(int fd, size_t len) {
    if (inject()) return MAP_FAILED;
    return mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
}

int lfmd_io_read_file(const char *path, size_t max, enum lfmd_mem cat, char **out, size_t *len,
                      struct lfmd_err_ctx *err) {
    *out = NULL;
    *len = 0;
    int fd = lfmd_io_open(path, O_RDONLY);
    if (fd < 0)
        return lfmd_err_set(err, errno == ENOENT ? LFMD_ENOENT : LFMD_EIO, "%s: cannot open: %s", path,
                            strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return lfmd_err_set(err, LFMD_EIO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max) {
        close(fd);
        return lfmd_err_set(err, LFMD_ETOOBIG, "%s: %lld bytes is over the %zu-byte limit", path,
                            (long long)st.st_size, max);
    }
    size_t n = (size_t)st.st_size;
    char *p = lfmd_malloc(n + 1, cat);
    if (!p) {
        close(fd);
        return lfmd_err_set(err, LFMD_ENOMEM, "%s: out of memory", path);
    }
    int bad = lfmd_io_pread_full(fd, p, n, 0);
    close(fd);
    if (bad) {
        lfmd_free(p);
        return lfmd_err_set(err, LFMD_EIO, "%s: read error", path);
    }
    p[n] = 0;
    *out = p;
    *len = n;
    return 0;
}
