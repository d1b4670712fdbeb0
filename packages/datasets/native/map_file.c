/*
 * trajlab_map_file: a Node-API binding that maps a file into memory as an ArrayBuffer (see ../src/map-file.ts).
 *
 * Reading a 31 MB file into a new Float32Array costs one page fault per 4 KB page of fresh memory, which the kernel
 * must zero first (and a VM's host must back); mapping the file instead shares the pages the page cache already
 * holds, several per fault. The mapping is private and writable: a write makes a private copy of its page (copy on
 * write) and never reaches the file. It is released when the ArrayBuffer is garbage collected.
 *
 * mapAscii maps a text file that is all ASCII as a string whose characters are the mapped bytes themselves (an
 * external latin1 string: V8 reads the pages, nothing is copied), for the JavaScript bundles (scripts/cached-bundle.cjs):
 * reading a 3.4 MB bundle into a Buffer and decoding it into a string touched ~1700 fresh pages in every process that
 * started. The string keeps the mapping until it is garbage collected. A bundle must never be rewritten in place while
 * a process runs it (V8 compiles functions from its source lazily): the build removes dist/ and writes new files.
 *
 * It also checksums bytes with XXH64 (xxHash's 64-bit hash, seed 0): a decoded copy's points are checked against the
 * checksum written with them in ~3 ms for 31 MB instead of ~30 ms for their sha256 (see ../src/idx-cache.ts).
 */
#define _DEFAULT_SOURCE /* mmap and MAP_* under -std=c11 */
/* node_api_create_external_string_latin1 (Node >= 20.4): experimental in Node 20's Node-API */
#define NAPI_EXPERIMENTAL
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The longest path accepted (PATH_MAX on Linux). */
#define MAX_PATH 4096

/* Releases a mapping (a basic finalizer: it may run during garbage collection and never calls into JavaScript). */
static void unmap(node_api_basic_env env, void *data, void *hint) {
  (void)env;
  munmap(data, (size_t)(uintptr_t)hint);
}

/* Throws an Error "<what> <path>: <strerror(err)>" with code = the errno name's text. */
static napi_value throw_errno(napi_env env, const char *what, const char *path, int err) {
  char message[MAX_PATH + 256];
  snprintf(message, sizeof message, "%s %s: %s", what, path, strerror(err));
  napi_throw_error(env, NULL, message);
  return NULL;
}

/*
 * Opens the file named by the callback's one argument, read-only: its descriptor in *fd and its size in *size.
 * Returns false once it has thrown (usage, path, open or stat), naming the function `name` or the file.
 */
static bool open_path_arg(napi_env env, napi_callback_info info, const char *name, char path[MAX_PATH + 1], int *fd, size_t *size) {
  size_t argc = 1;
  napi_value argv[1];
  char message[96];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1) {
    snprintf(message, sizeof message, "usage: %s(path: string)", name);
    napi_throw_type_error(env, NULL, message);
    return false;
  }
  size_t length = 0;
  if (napi_get_value_string_utf8(env, argv[0], path, MAX_PATH + 1, &length) != napi_ok) {
    snprintf(message, sizeof message, "%s: path must be a string", name);
    napi_throw_type_error(env, NULL, message);
    return false;
  }
  if (length >= MAX_PATH) {
    snprintf(message, sizeof message, "%s: path too long", name);
    napi_throw_range_error(env, NULL, message);
    return false;
  }
  *fd = open(path, O_RDONLY | O_CLOEXEC);
  if (*fd < 0) {
    throw_errno(env, "cannot open", path, errno);
    return false;
  }
  struct stat st;
  if (fstat(*fd, &st) != 0) {
    int err = errno;
    close(*fd);
    throw_errno(env, "cannot stat", path, err);
    return false;
  }
  *size = st.st_size > 0 ? (size_t)st.st_size : 0;
  return true;
}

/* mapFile(path: string): ArrayBuffer over the whole file (private, copy-on-write). Throws on an empty file. */
static napi_value map_file(napi_env env, napi_callback_info info) {
  char path[MAX_PATH + 1];
  int fd;
  size_t size;
  if (!open_path_arg(env, info, "mapFile", path, &fd, &size)) return NULL;
  if (size == 0) {
    close(fd);
    return throw_errno(env, "cannot map", path, EINVAL);
  }
  void *data = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  int err = errno;
  close(fd); /* the mapping keeps the file */
  if (data == MAP_FAILED) return throw_errno(env, "cannot map", path, err);
  napi_value buffer;
  if (napi_create_external_arraybuffer(env, data, size, unmap, (void *)(uintptr_t)size, &buffer) != napi_ok) {
    munmap(data, size);
    napi_throw_error(env, NULL, "mapFile: napi_create_external_arraybuffer failed");
    return NULL;
  }
  return buffer;
}

/* Whether all `size` bytes are ASCII (below 0x80), eight at a time. */
static bool all_ascii(const unsigned char *p, size_t size) {
  size_t i = 0;
  uint64_t high = 0;
  for (; i + 8 <= size; i += 8) {
    uint64_t word;
    memcpy(&word, p + i, 8);
    high |= word;
  }
  for (; i < size; i++) high |= p[i];
  return (high & 0x8080808080808080ULL) == 0;
}

/*
 * mapAscii(path: string): string | null. The file's text as a string over its mapped bytes when every byte is ASCII
 * (read-only, private mapping); null when it is not (the caller then decodes it as UTF-8); '' for an empty file.
 * Throws naming the file when it cannot be opened or mapped.
 */
static napi_value map_ascii(napi_env env, napi_callback_info info) {
  char path[MAX_PATH + 1];
  int fd;
  size_t size;
  if (!open_path_arg(env, info, "mapAscii", path, &fd, &size)) return NULL;
  napi_value out;
  if (size == 0) {
    close(fd);
    if (napi_create_string_latin1(env, "", 0, &out) != napi_ok) return NULL;
    return out;
  }
  char *data = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
  int err = errno;
  close(fd); /* the mapping keeps the file */
  if (data == MAP_FAILED) return throw_errno(env, "cannot map", path, err);
  if (!all_ascii((const unsigned char *)data, size)) {
    munmap(data, size);
    if (napi_get_null(env, &out) != napi_ok) return NULL;
    return out;
  }
  bool copied = false;
  /* when V8 copies the characters instead (it may, for short strings), the finalizer has already unmapped them */
  if (node_api_create_external_string_latin1(env, data, size, unmap, (void *)(uintptr_t)size, &out, &copied) != napi_ok) {
    munmap(data, size);
    napi_throw_error(env, NULL, "mapAscii: node_api_create_external_string_latin1 failed");
    return NULL;
  }
  return out;
}

/* XXH64's primes */
#define XXH_P1 0x9E3779B185EBCA87ULL
#define XXH_P2 0xC2B2AE3D27D4EB4FULL
#define XXH_P3 0x165667B19E3779F9ULL
#define XXH_P4 0x85EBCA77C2B2AE63ULL
#define XXH_P5 0x27D4EB2F165667C5ULL

static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

/* little-endian loads whatever the machine's byte order */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
static inline uint64_t load64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return __builtin_bswap64(v);
}
static inline uint32_t load32(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return __builtin_bswap32(v);
}
#else
static inline uint64_t load64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}
static inline uint32_t load32(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}
#endif

static inline uint64_t xxh64_round(uint64_t acc, uint64_t lane) { return rotl64(acc + lane * XXH_P2, 31) * XXH_P1; }
static inline uint64_t xxh64_merge(uint64_t h, uint64_t acc) { return (h ^ xxh64_round(0, acc)) * XXH_P1 + XXH_P4; }

/* XXH64 of `len` bytes with seed 0: four lanes over 32-byte stripes, then the tail, then the final avalanche */
static uint64_t xxh64(const uint8_t *p, size_t len) {
  const uint8_t *end = p + len;
  uint64_t h;
  if (len >= 32) {
    uint64_t v1 = XXH_P1 + XXH_P2, v2 = XXH_P2, v3 = 0, v4 = (uint64_t)0 - XXH_P1;
    for (; end - p >= 32; p += 32) {
      v1 = xxh64_round(v1, load64(p));
      v2 = xxh64_round(v2, load64(p + 8));
      v3 = xxh64_round(v3, load64(p + 16));
      v4 = xxh64_round(v4, load64(p + 24));
    }
    h = rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18);
    h = xxh64_merge(h, v1);
    h = xxh64_merge(h, v2);
    h = xxh64_merge(h, v3);
    h = xxh64_merge(h, v4);
  } else {
    h = XXH_P5;
  }
  h += (uint64_t)len;
  for (; end - p >= 8; p += 8) h = rotl64(h ^ xxh64_round(0, load64(p)), 27) * XXH_P1 + XXH_P4;
  if (end - p >= 4) {
    h = rotl64(h ^ ((uint64_t)load32(p) * XXH_P1), 23) * XXH_P2 + XXH_P3;
    p += 4;
  }
  for (; p < end; p++) h = rotl64(h ^ (*p * XXH_P5), 11) * XXH_P1;
  h ^= h >> 33;
  h *= XXH_P2;
  h ^= h >> 29;
  h *= XXH_P3;
  h ^= h >> 32;
  return h;
}

/* checksum(bytes: ArrayBufferView): the XXH64 of the view's bytes as 16 hex digits. */
static napi_value checksum(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  bool is_view = false;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1 || napi_is_typedarray(env, argv[0], &is_view) != napi_ok || !is_view) {
    napi_throw_type_error(env, NULL, "usage: checksum(bytes: TypedArray)");
    return NULL;
  }
  napi_typedarray_type type;
  size_t length = 0, offset = 0;
  void *data = NULL;
  napi_value arraybuffer;
  if (napi_get_typedarray_info(env, argv[0], &type, &length, &data, &arraybuffer, &offset) != napi_ok) {
    napi_throw_error(env, NULL, "checksum: cannot read the array");
    return NULL;
  }
  size_t element = type == napi_int8_array || type == napi_uint8_array || type == napi_uint8_clamped_array ? 1
                   : type == napi_int16_array || type == napi_uint16_array                                   ? 2
                   : type == napi_int32_array || type == napi_uint32_array || type == napi_float32_array     ? 4
                                                                                                             : 8;
  uint64_t h = xxh64(length ? (const uint8_t *)data : (const uint8_t *)"", length * element);
  char hex[17];
  snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
  napi_value out;
  if (napi_create_string_latin1(env, hex, 16, &out) != napi_ok) return NULL;
  return out;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"mapFile", NULL, map_file, NULL, NULL, NULL, napi_default, NULL},
      {"checksum", NULL, checksum, NULL, NULL, NULL, napi_default, NULL},
      {"mapAscii", NULL, map_ascii, NULL, NULL, NULL, napi_default, NULL},
  };
  if (napi_define_properties(env, exports, 3, props) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(trajlab_map_file, init)
