/*
 * A Node-API addon with one function, mallocTrim(): glibc's malloc_trim(0), which hands every
 * whole free page of every malloc arena back to the system (madvise), not only the heap's top as
 * free() does. Returns true when memory was released. Declares the three Node-API calls it uses
 * itself (they are C functions the node binary exports), so it builds with a C compiler and the C
 * library's headers alone: src/native/build.mjs compiles it during `npm run build` on glibc.
 */
#include <malloc.h>
#include <stddef.h>

#ifndef __GLIBC__
#error "malloc_trim is glibc's"
#endif

typedef struct napi_env__ *napi_env;
typedef struct napi_value__ *napi_value;
typedef struct napi_callback_info__ *napi_callback_info;
typedef int napi_status;
typedef napi_value (*napi_callback)(napi_env env, napi_callback_info info);

extern napi_status napi_create_function(napi_env env, const char *name, size_t length, napi_callback cb, void *data, napi_value *result);
extern napi_status napi_set_named_property(napi_env env, napi_value object, const char *name, napi_value value);
extern napi_status napi_get_boolean(napi_env env, _Bool value, napi_value *result);

static napi_value trim(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result = NULL;
  napi_get_boolean(env, malloc_trim(0) != 0, &result);
  return result;
}

/* Node-API's module entry: found by name when the module does not register itself. */
__attribute__((visibility("default"))) napi_value napi_register_module_v1(napi_env env, napi_value exports) {
  napi_value fn;
  if (napi_create_function(env, "mallocTrim", (size_t)-1, trim, NULL, &fn) != 0) return NULL;
  if (napi_set_named_property(env, exports, "mallocTrim", fn) != 0) return NULL;
  return exports;
}
