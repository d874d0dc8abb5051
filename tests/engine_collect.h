// Test helper: collects one engine request's events (text, counts, finish, scores, logprobs) and
// lets the test thread wait for DONE. Shared by the engine, batching and constraint tests.
// SPDX-License-Identifier: MIT
#ifndef LFMD_TESTS_ENGINE_COLLECT_H
#define LFMD_TESTS_ENGINE_COLLECT_H

#include "engine/engine.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

struct collect {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char text[8192];
    size_t len;
    int started, done, code, n_prompt, n_gen, n_cached, pieces;
    enum engine_finish finish;
    char msg[512];
    double scores[8];        // scoring mode: summed log-probs of the choices
    int n_scores;
    int n_lp;                // LOGPROB events
    float lp_sum;
    bool check_greedy;       // set by the test: a LOGPROB whose token is not the most likely one
                             // sets code to -999 (the request was greedy)
};

static void on_event(void *user, const struct engine_event *ev) {
    struct collect *c = user;
    pthread_mutex_lock(&c->mu);
    if (ev->kind == ENGINE_EV_START) {
        c->started = 1;
        c->n_prompt = ev->n_prompt;
    } else if (ev->kind == ENGINE_EV_TEXT) {
        if (c->len + ev->len < sizeof c->text) {
            memcpy(c->text + c->len, ev->text, ev->len);
            c->len += ev->len;
            c->text[c->len] = 0;
        }
        c->pieces++;
    } else if (ev->kind == ENGINE_EV_LOGPROB) {
        c->n_lp++;
        c->lp_sum += ev->tok.logprob;
        if (c->check_greedy && ev->n_top > 0 && ev->top[0].logprob > ev->tok.logprob + 1e-5f) c->code = -999;
    } else if (ev->kind == ENGINE_EV_DONE) {
        c->done = 1;
        if (!c->code) c->code = ev->code;
        c->finish = ev->finish;
        c->n_prompt = ev->n_prompt;
        c->n_gen = ev->n_gen;
        c->n_cached = ev->n_cached;
        c->n_scores = ev->n_scores;
        for (int i = 0; i < ev->n_scores && i < 8; i++) c->scores[i] = ev->scores[i];
        if (ev->msg) snprintf(c->msg, sizeof c->msg, "%s", ev->msg);
        pthread_cond_broadcast(&c->cv);
    }
    pthread_mutex_unlock(&c->mu);
}

static void collect_init(struct collect *c) {
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
}

static void collect_wait(struct collect *c) {
    pthread_mutex_lock(&c->mu);
    while (!c->done) pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
}

#endif
