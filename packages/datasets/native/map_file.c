/*
 * trajlab_map_file: a Node-API binding that maps a file into memory as an ArrayBuffer (see ../src/map-file.ts).
 *
 * Reading a 31 MB file into a new Float32Array costs one page fault per 4 KB page of fresh memory, which the kernel
 * must zero first (and a VM's host must back); mapping the file instead shares the pages the page cache already
 * holds, several per fault. The mapping is private and writable: a write makes a private copy of its page (copy on
 * write) and never reaches the file. It is released when the ArrayBuffer is garbage collected.
 */
#define _DEFAULT_SOURCE /* mmap and MAP_* under -std=c11 */
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The longest path accepted (PATH_MAX on Linux). */
#define MAX_PATH 4096

static void unmap(napi_env env, void *data, void *hint) {
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

/* mapFile(path: string): ArrayBuffer over the whole file (private, copy-on-write). Throws on an empty file. */
static napi_value map_file(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1) {
    napi_throw_type_error(env, NULL, "usage: mapFile(path: string)");
    return NULL;
  }
  char path[MAX_PATH + 1];
  size_t length = 0;
  if (napi_get_value_string_utf8(env, argv[0], path, sizeof path, &length) != napi_ok) {
    napi_throw_type_error(env, NULL, "mapFile: path must be a string");
    return NULL;
  }
  if (length >= MAX_PATH) {
    napi_throw_range_error(env, NULL, "mapFile: path too long");
    return NULL;
  }
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return throw_errno(env, "cannot open", path, errno);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, "cannot stat", path, err);
  }
  if (st.st_size <= 0) {
    close(fd);
    return throw_errno(env, "cannot map", path, EINVAL);
  }
  size_t size = (size_t)st.st_size;
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

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {{"mapFile", NULL, map_file, NULL, NULL, NULL, napi_default, NULL}};
  if (napi_define_properties(env, exports, 1, props) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(trajlab_map_file, init)
