// Device selection for the engine: `--device cpu|cuda:N[,cuda:M...]`, `--split A,B`,
// `--gpu-memory-limit`. With a CUDA device configured, engine_ops_for_path returns
// engine_model_cuda (model_cuda.c): the real model's tokenizer with forward passes, sequences and
// runners on the GPU(s). Without LFMD_CUDA builds, asking for a CUDA device is an error.
// SPDX-License-Identifier: MIT
#ifndef LFMD_ENGINE_MODEL_CUDA_H
#define LFMD_ENGINE_MODEL_CUDA_H

#include "engine.h"

struct model;

// Records the device choice (strings borrowed for the process). device NULL/"cpu" = CPU.
// LFMD_ENOTSUP when CUDA is requested in a build without it; LFMD_EINVAL on junk.
int engine_cuda_configure(const char *device, const char *split, size_t gpu_memory_limit,
                          struct lfmd_err_ctx *err);
// The CUDA ops when a CUDA device was configured, else NULL.
const struct engine_model_ops *engine_cuda_ops(void);
// Greedy steps pick tokens on the GPU (forward_batch_greedy; default on). Off: the ops returned
// by engine_cuda_ops afterwards copy logits to the host for every step (tests, A/B timing).
void engine_cuda_set_gpu_greedy(bool on);
// forward_batch_greedy calls so far (0 in builds without CUDA).
uint64_t engine_cuda_greedy_steps(void);
// The struct model inside a handle opened by engine_model_real.open (model_real.c).
struct model *engine_real_model(void *handle);

#endif
