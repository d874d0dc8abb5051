// Every ceiling lfmd enforces, in one place (SQLite sqliteLimit.h / curl DYN_* style).
// SPDX-License-Identifier: MIT
#ifndef LFMD_BASE_LIMITS_H
#define LFMD_BASE_LIMITS_H

#define LFMD_MAX_JSON_DEPTH 128                       // nesting of any JSON document
#define LFMD_MAX_CONFIG_BYTES (4u << 20)              // config.json, tokenizer_config.json
#define LFMD_MAX_TOKENIZER_BYTES (64u << 20)          // tokenizer.json
#define LFMD_MAX_SAFETENSORS_HEADER (100u << 20)      // safetensors JSON header
#define LFMD_MAX_SHARDS 256                           // model-*.safetensors files
#define LFMD_MAX_TENSORS 65536                        // tensors in one model
#define LFMD_MAX_LAYERS 256
#define LFMD_MAX_DIM (1 << 20)                        // any single model dimension
#define LFMD_MAX_VOCAB (1 << 21)
#define LFMD_MAX_CTX (1 << 20)                        // tokens in one sequence
#define LFMD_MAX_THREADS 256
#define LFMD_MAX_BATCH_TOKENS 512                     // tokens per forward chunk
#define LFMD_MAX_BODY_BYTES (8u << 20)                // HTTP request body
#define LFMD_MAX_HEADER_BYTES (32u << 10)             // HTTP headers
#define LFMD_MAX_LINE_BYTES (8u << 20)                // one stdio NDJSON line
#define LFMD_MAX_TOKENS_PER_REQUEST (1 << 16)
#define LFMD_MAX_STOP_STRINGS 16
#define LFMD_MAX_CONNECTIONS 1024
#define LFMD_MAX_QUEUE 256                            // requests waiting for admission
#define LFMD_MAX_CHAT_MESSAGES 1024                   // messages in one chat request
#define LFMD_MAX_PARALLEL 64                          // sequences decoded concurrently
#define LFMD_HTTP_CONN_TIMEOUT_S 600                  // idle HTTP connection timeout
#define LFMD_HTTP_CONN_MEMORY (64u << 10)             // libmicrohttpd per-connection pool
#define LFMD_HTTP_REQUEST_TIMEOUT_S 30                // accept -> headers + body complete
#define LFMD_HTTP_KEEPALIVE_TIMEOUT_S 75              // idle keep-alive between requests
#define LFMD_HTTP_BODY_DISCARD_MAX (64u << 20)        // over-limit bodies up to this are read and
                                                      //   dropped (clean 413); larger: cut at once
#define LFMD_HTTP_EVICT_NUM 3                         // idle connections are evicted once
#define LFMD_HTTP_EVICT_DEN 4                         //   NUM/DEN of the connection limit is used

#endif
