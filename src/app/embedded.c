// Extraction of the embedded default model; see embedded.h. The symbol table comes from the
// generated assembly (embed_model.S) when LFMD_EMBED_MODEL is defined.
// SPDX-License-Identifier: MIT
#include "embedded.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef LFMD_EMBED_MODEL
#include "embed_list.h"
#define X(sym, name)                                                                           \
    extern const unsigned char lfmd_embed_##sym##_start[];                                     \
    extern const unsigned char lfmd_embed_##sym##_end[];
LFMD_EMBED_LIST(X)
#undef X
static struct embedded_file files[] = {
#define X(sym, name) {name, lfmd_embed_##sym##_start, 0},
    LFMD_EMBED_LIST(X)
#undef X
};
static void fill_sizes(void) {
    size_t i = 0;
#define X(sym, name) files[i++].size = (size_t)(lfmd_embed_##sym##_end - lfmd_embed_##sym##_start);
    LFMD_EMBED_LIST(X)
#undef X
}
#define N_FILES (sizeof files / sizeof files[0])
#else
static struct embedded_file files[1];
static void fill_sizes(void) {}
#define N_FILES 0
#endif

const struct embedded_file *embedded_model_files(size_t *n) {
    fill_sizes();
    *n = N_FILES;
    return N_FILES ? files : NULL;
}

const char *embedded_model_name(void) { return "lfm2-router-q8"; }

// FNV-1a over sizes and 16 sampled bytes per file: names the cache dir so a rebuilt binary with a
// different model never reuses stale files. Samples few pages so the embedded data stays unread
// (not resident) when the cache is already there.
static uint64_t fingerprint(const struct embedded_file *f, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        uint64_t v[3] = {f[i].size, f[i].size ? f[i].data[0] : 0, f[i].size ? f[i].data[f[i].size - 1] : 0};
        for (int k = 0; k < 3; k++) h = (h ^ v[k]) * 1099511628211ull;
        for (size_t k = 0; k < 16 && f[i].size; k++)
            h = (h ^ f[i].data[f[i].size / 16 * k]) * 1099511628211ull;
    }
    return h;
}

static int write_all(const char *path, const unsigned char *p, size_t n) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, p + done, n - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            close(fd);
            return -1;
        }
        done += (size_t)w;
    }
    return close(fd);
}

static int mkdirs(const char *path) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(tmp, 0755) && errno != EEXIST) return -1;
        *p = '/';
    }
    return mkdir(tmp, 0755) && errno != EEXIST ? -1 : 0;
}

static int dir_complete(const char *dir, const struct embedded_file *f, size_t n);

const char *embedded_model_dir(void) {
    static char dir[4096];
    size_t n;
    const struct embedded_file *f = embedded_model_files(&n);
    if (!f) return NULL;
    char base[3072];
    const char *env = getenv("LFMD_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (env && *env) snprintf(base, sizeof base, "%s", env);
    else if (xdg && *xdg) snprintf(base, sizeof base, "%s/lfmd", xdg);
    else if (home && *home) snprintf(base, sizeof base, "%s/.cache/lfmd", home);
    else snprintf(base, sizeof base, "/tmp/lfmd-%u", (unsigned)getuid());
    // <cache>/<fingerprint>/lfm2-router-q8: the last component is the name servers report.
    char parent[3200];
    snprintf(parent, sizeof parent, "%s/%016llx", base, (unsigned long long)fingerprint(f, n));
    snprintf(dir, sizeof dir, "%s/%s", parent, embedded_model_name());
    if (dir_complete(dir, f, n)) return dir;
    // Write into a private temp dir, then rename into place (another process may race us: the
    // loser's rename fails with the winner's complete copy already there).
    char tmp[4200], path[4400];
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", dir, (long)getpid());
    if (mkdirs(parent) || mkdirs(tmp)) goto fail;
    for (size_t i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s", tmp, f[i].name);
        if (write_all(path, f[i].data, f[i].size)) goto fail;
    }
    if (rename(tmp, dir) != 0) {
        for (size_t i = 0; i < n; i++) {
            snprintf(path, sizeof path, "%s/%s", tmp, f[i].name);
            unlink(path);
        }
        rmdir(tmp);
        if (!dir_complete(dir, f, n)) goto fail;
    }
    return dir;
fail:
    fprintf(stderr, "lfmd: cannot write the embedded default model to %s: %s "
                    "(set LFMD_CACHE_DIR to a writable directory)\n", dir, strerror(errno));
    return NULL;
}

static int dir_complete(const char *dir, const struct embedded_file *f, size_t n) {
    char path[4400];
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, f[i].name);
        if (stat(path, &st) != 0 || (size_t)st.st_size != f[i].size) return 0;
    }
    return 1;
}
