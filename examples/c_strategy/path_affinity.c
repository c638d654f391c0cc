// Path affinity: a load-balancing strategy for lbhost written in C.
//
// Every request for the same path (or the same first N path segments) goes to the same backend,
// which keeps per-path caches on the backends warm. The choice is rendezvous hashing over the
// backends' stable keys: score = mix64(backend.key ^ fnv1a64(path)), the highest score wins. So
// every lbhost node agrees without coordination, and when a backend goes down or is drained only
// the paths it owned move elsewhere.
//
// Parameters (`strategy_config`):
//   prefix_segments  hash only the first N segments of the path (`/api/users/42` with N = 2 hashes
//                    `/api/users`); an integer >= 1. Default: the whole path.
//
// Memory rules of wit-bindgen's C bindings: an exported function owns the lists and strings it is
// given and must free them (the *_free helpers); a string returned by an imported function (the
// request getters) belongs to the caller too; an error string returned from `configure` must be
// heap-allocated: the bindings free it after the host has read it.

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bindings/balancer.h"

// What the strategy keeps of a backend between `backends-changed` calls.
typedef struct {
    uint64_t key;
    uint32_t weight;
    bool eligible;
} backend_t;

// The largest accepted `prefix_segments` (anything larger is the whole path anyway).
#define MAX_PREFIX_SEGMENTS 1000000u

// 0 = hash the whole path; otherwise the number of leading path segments to hash.
static uint32_t prefix_segments;
static backend_t *backends;
static size_t backend_count;

// FNV-1a, 64-bit: the same function as the Rust SDK's `hash::fnv1a64`.
static uint64_t fnv1a64(const uint8_t *bytes, size_t len) {
    uint64_t hash = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        hash ^= bytes[i];
        hash *= 0x00000100000001b3ull;
    }
    return hash;
}

// The splitmix64 finalizer: the same function as the Rust SDK's `hash::mix64`.
static uint64_t mix64(uint64_t x) {
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

// The length of the part of `path` that is hashed: up to (not including) the slash that starts
// segment `prefix_segments + 1`, or the whole path.
static size_t hashed_len(const uint8_t *path, size_t len) {
    if (prefix_segments == 0) {
        return len;
    }
    uint32_t seen = 0;
    for (size_t i = 1; i < len; i++) {
        if (path[i] == '/' && ++seen == prefix_segments) {
            return i;
        }
    }
    return len;
}

static bool string_is(const balancer_string_t *s, const char *text) {
    size_t n = strlen(text);
    return s->len == n && memcmp(s->ptr, text, n) == 0;
}

// Parses a decimal integer in 1..=MAX_PREFIX_SEGMENTS (digits only, no sign, no spaces).
static bool parse_positive(const balancer_string_t *s, uint32_t *out) {
    if (s->len == 0 || s->len > 7) {
        return false;
    }
    uint32_t value = 0;
    for (size_t i = 0; i < s->len; i++) {
        uint8_t c = s->ptr[i];
        if (c < '0' || c > '9') {
            return false;
        }
        value = value * 10 + (uint32_t)(c - '0');
    }
    if (value == 0 || value > MAX_PREFIX_SEGMENTS) {
        return false;
    }
    *out = value;
    return true;
}

// Sets `err` to the heap-allocated concatenation "strategy_config." + key + message.
static void set_error(balancer_string_t *err, const balancer_string_t *key, const char *message) {
    static const char prefix[] = "strategy_config.";
    size_t prefix_len = sizeof prefix - 1;
    size_t message_len = strlen(message);
    size_t len = prefix_len + key->len + message_len;
    uint8_t *text = malloc(len);
    if (text == NULL) {
        abort();
    }
    memcpy(text, prefix, prefix_len);
    memcpy(text + prefix_len, key->ptr, key->len);
    memcpy(text + prefix_len + key->len, message, message_len);
    err->ptr = text;
    err->len = len;
}

bool exports_lb_strategy_strategy_configure(balancer_list_tuple2_string_string_t *params,
                                            exports_lb_strategy_strategy_needs_t *ret,
                                            balancer_string_t *err) {
    uint32_t segments = 0;
    bool ok = true;
    for (size_t i = 0; i < params->len && ok; i++) {
        const balancer_string_t *key = &params->ptr[i].f0;
        const balancer_string_t *value = &params->ptr[i].f1;
        if (!string_is(key, "prefix_segments")) {
            set_error(err, key, ": unknown parameter (expected one of: prefix_segments)");
            ok = false;
        } else if (!parse_positive(value, &segments)) {
            set_error(err, key, ": must be a positive integer");
            ok = false;
        }
    }
    balancer_list_tuple2_string_string_free(params);
    if (!ok) {
        return false;
    }
    prefix_segments = segments;
    *ret = 0; // needs no per-request columns (in-flight, latency) and no feedback
    return true;
}

void exports_lb_strategy_strategy_backends_changed(exports_lb_strategy_strategy_list_backend_t *list) {
    backend_t *copy = NULL;
    if (list->len > 0) {
        copy = malloc(list->len * sizeof *copy);
        if (copy == NULL) {
            abort();
        }
        for (size_t i = 0; i < list->len; i++) {
            copy[i].key = list->ptr[i].key;
            copy[i].weight = list->ptr[i].weight;
            copy[i].eligible = list->ptr[i].eligible;
        }
    }
    free(backends);
    backends = copy;
    backend_count = list->len;
    exports_lb_strategy_strategy_list_backend_free(list);
}

// Whether backend `index` was already tried for this request (`exclude` is absent on a first try).
static bool is_excluded(const balancer_option_list_u32_t *exclude, size_t index) {
    if (!exclude->is_some) {
        return false;
    }
    for (size_t i = 0; i < exclude->val.len; i++) {
        if (exclude->val.ptr[i] == index) {
            return true;
        }
    }
    return false;
}

bool exports_lb_strategy_strategy_select(exports_lb_strategy_strategy_select_context_t *ctx,
                                         exports_lb_strategy_strategy_borrow_request_t request,
                                         uint32_t *ret) {
    balancer_string_t path;
    lb_strategy_http_method_request_path(request, &path);
    uint64_t path_hash = fnv1a64(path.ptr, hashed_len(path.ptr, path.len));
    balancer_string_free(&path);

    bool found = false;
    uint64_t best_score = 0;
    uint32_t best = 0;
    for (size_t i = 0; i < backend_count; i++) {
        const backend_t *b = &backends[i];
        if (!b->eligible || b->weight == 0 || is_excluded(&ctx->exclude, i)) {
            continue;
        }
        uint64_t score = mix64(b->key ^ path_hash);
        if (!found || score > best_score) {
            found = true;
            best_score = score;
            best = (uint32_t)i;
        }
    }
    exports_lb_strategy_strategy_select_context_free(ctx);
    *ret = best;
    return found;
}

void exports_lb_strategy_strategy_on_response(uint32_t backend, uint16_t status, uint32_t latency_us) {
    (void)backend;
    (void)status;
    (void)latency_us;
}
