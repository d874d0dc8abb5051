// --no-mmap (lfmd_io_set_copy_maps): weights read into anonymous huge-page memory give exactly
// the logits of the mapped file, survive model_release_pages (idle trim would otherwise zero
// them), the copy is 2 MiB-aligned, and a failing read inside the copy is a clean error with no
// leak, for every read of a model open (fault sweep).
// SPDX-License-Identifier: MIT
#include "check.h"
#include "base/alloc.h"
#include "base/io.h"
#include "model/model.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define ROUTER "models/lfm2-router"

// Opens ROUTER, runs 5 tokens, copies the last logits into out (n_vocab floats). 0 or an error.
static int run(float *out, int n_vocab, bool release, struct lfmd_err_ctx *err) {
    struct model *m = NULL;
    struct runner *r = NULL;
    struct seq *s = NULL;
    const int32_t toks[5] = {1, 42, 7, 300, 12};
    int rc = model_open(ROUTER, NULL, &m, err);
    if (!rc && release) model_release_pages(m);
    if (!rc) rc = runner_new(m, 2, 8, &r, err);
    if (!rc) rc = seq_new(m, 16, &s, err);
    if (!rc) rc = model_forward(r, s, toks, 5, out, err);
    if (!rc && model_get_config(m)->n_vocab != n_vocab) rc = LFMD_EINVAL;
    seq_free(s);
    runner_free(r);
    model_close(m);
    return rc;
}

int main(void) {
    struct lfmd_err_ctx err = {0};
    struct model *m = NULL;
    CHECK_EQ(model_open(ROUTER, NULL, &m, &err), 0);
    const int V = model_get_config(m)->n_vocab;
    model_close(m);
    static float a[1 << 16], b[1 << 16];
    CHECK(V <= (1 << 16));

    CHECK_EQ(run(a, V, false, &err), 0); // mapped
    lfmd_io_set_copy_maps(true);
    CHECK(lfmd_io_copy_maps());
    memset(b, 0, sizeof b);
    CHECK_EQ(run(b, V, false, &err), 0); // copied
    CHECK(memcmp(a, b, (size_t)V * sizeof *a) == 0);
    memset(b, 0, sizeof b);
    CHECK_EQ(run(b, V, true, &err), 0); // copied, pages "released" before the forward pass
    CHECK(memcmp(a, b, (size_t)V * sizeof *a) == 0);

    // The copy is 2 MiB-aligned (huge pages need it) and holds the file's bytes.
    int fd = lfmd_io_open(ROUTER "/model.safetensors", 0);
    CHECK(fd >= 0);
    uint8_t head[64], *map = lfmd_io_mmap(fd, 1 << 20);
    CHECK(map != MAP_FAILED);
    CHECK(((uintptr_t)map & ((2u << 20) - 1)) == 0);
    CHECK_EQ(lfmd_io_pread_full(fd, head, sizeof head, 0), 0);
    CHECK(memcmp(map, head, sizeof head) == 0);
    munmap(map, 1 << 20);
    close(fd);

    // Every file call of an open fails once in turn: clean error, nothing leaked.
    long live0 = lfmd_alloc_live();
    int failures = 0;
    for (long n = 0; n < 200; n++) {
        lfmd_io_fail_after(n);
        struct lfmd_err_ctx e2 = {0};
        int rc = run(b, V, false, &e2);
        lfmd_io_fail_after(-1);
        if (rc == 0) {
            CHECK(memcmp(a, b, (size_t)V * sizeof *a) == 0);
            break;
        }
        failures++;
        CHECK(e2.msg[0] != '\0');
        CHECK_EQ(lfmd_alloc_live(), live0);
    }
    fprintf(stderr, "copy-mode open: %d injected file faults, all clean\n", failures);
    CHECK(failures > 0);
    lfmd_io_set_copy_maps(false);
    return check_done();
}
