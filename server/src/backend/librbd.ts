// librados and librbd, loaded at run time through koffi (an FFI with prebuilt binaries in its npm
// package): wsblk builds and installs without Ceph's headers or libraries, and only an rbd:
// export needs librbd.so.1 on the machine. Handles are opaque pointers (BigInt in koffi).
import { createRequire } from 'node:module';

type Fn = ((...args: unknown[]) => number) & { async: (...args: unknown[]) => void };
type Koffi = {
  load(path: string): { func(proto: string): Fn };
  address(p: unknown): bigint;
};

/** What librbd's C API calls a handle: a pointer, as koffi hands it over. */
export type Handle = unknown;

export const RBD_LOCK_MODE_EXCLUSIVE = 0;
/** rbd_set_image_notification: librbd writes a byte to a pipe per completion. */
export const EVENT_TYPE_PIPE = 1;
/** rbd_aio_write_zeroes: allocate the zeroed range (NBD's NO_HOLE). */
export const RBD_WRITE_ZEROES_FLAG_THICK_PROVISION = 1;

export interface Librbd {
  koffi: Koffi;
  rados_create: Fn;
  rados_conf_read_file: Fn;
  rados_conf_set: Fn;
  rados_connect: Fn;
  rados_ioctx_create: Fn;
  rados_ioctx_destroy: Fn;
  rados_shutdown: Fn;
  rbd_open: Fn;
  rbd_open_read_only: Fn;
  rbd_close: Fn;
  rbd_get_size: Fn;
  rbd_get_features: Fn;
  rbd_aio_create_completion: Fn;
  rbd_aio_read: Fn;
  rbd_aio_write: Fn;
  rbd_aio_flush: Fn;
  rbd_aio_discard: Fn;
  rbd_aio_write_zeroes: Fn;
  rbd_aio_get_return_value: Fn;
  rbd_aio_release: Fn;
  rbd_set_image_notification: Fn;
  rbd_poll_io_events: Fn;
  rbd_lock_acquire: Fn;
  rbd_lock_release: Fn;
  rbd_lock_get_owners: Fn;
  rbd_lock_break: Fn;
  rbd_is_exclusive_lock_owner: Fn;
  rbd_metadata_get: Fn;
  rbd_metadata_set: Fn;
  pipe2: Fn;
}

let loaded: Librbd | undefined;

/** The bindings, loaded on first use; throws a one-line Error when librbd or librados is missing. */
export function librbd(): Librbd {
  if (loaded) return loaded;
  const koffi = createRequire(import.meta.url)('koffi') as Koffi;
  const open = (name: string) => {
    try {
      return koffi.load(name);
    } catch {
      throw new Error(`rbd: exports need ${name} (Debian: apt-get install librbd1), which cannot be loaded`);
    }
  };
  const rados = open('librados.so.2');
  const rbd = open('librbd.so.1');
  const libc = open('libc.so.6');
  loaded = {
    koffi,
    rados_create: rados.func('int rados_create(_Out_ void **cluster, const char *id)'),
    rados_conf_read_file: rados.func('int rados_conf_read_file(void *cluster, const char *path)'),
    rados_conf_set: rados.func('int rados_conf_set(void *cluster, const char *option, const char *value)'),
    rados_connect: rados.func('int rados_connect(void *cluster)'),
    rados_ioctx_create: rados.func('int rados_ioctx_create(void *cluster, const char *pool, _Out_ void **ioctx)'),
    rados_ioctx_destroy: rados.func('void rados_ioctx_destroy(void *ioctx)'),
    rados_shutdown: rados.func('void rados_shutdown(void *cluster)'),
    rbd_open: rbd.func('int rbd_open(void *ioctx, const char *name, _Out_ void **image, const char *snap)'),
    rbd_open_read_only: rbd.func('int rbd_open_read_only(void *ioctx, const char *name, _Out_ void **image, const char *snap)'),
    rbd_close: rbd.func('int rbd_close(void *image)'),
    rbd_get_size: rbd.func('int rbd_get_size(void *image, _Out_ uint64_t *size)'),
    rbd_get_features: rbd.func('int rbd_get_features(void *image, _Out_ uint64_t *features)'),
    rbd_aio_create_completion: rbd.func('int rbd_aio_create_completion(void *arg, void *cb, _Out_ void **c)'),
    rbd_aio_read: rbd.func('int rbd_aio_read(void *image, uint64_t off, size_t len, void *buf, void *c)'),
    rbd_aio_write: rbd.func('int rbd_aio_write(void *image, uint64_t off, size_t len, void *buf, void *c)'),
    rbd_aio_flush: rbd.func('int rbd_aio_flush(void *image, void *c)'),
    rbd_aio_discard: rbd.func('int rbd_aio_discard(void *image, uint64_t off, uint64_t len, void *c)'),
    rbd_aio_write_zeroes: rbd.func('int rbd_aio_write_zeroes(void *image, uint64_t off, size_t len, void *c, int zflags, int opflags)'),
    rbd_aio_get_return_value: rbd.func('int64_t rbd_aio_get_return_value(void *c)'),
    rbd_aio_release: rbd.func('void rbd_aio_release(void *c)'),
    rbd_set_image_notification: rbd.func('int rbd_set_image_notification(void *image, int fd, int type)'),
    rbd_poll_io_events: rbd.func('int rbd_poll_io_events(void *image, _Out_ void *comps, int n)'),
    rbd_lock_acquire: rbd.func('int rbd_lock_acquire(void *image, int mode)'),
    rbd_lock_release: rbd.func('int rbd_lock_release(void *image)'),
    // koffi copies the owner's name out as a string; the C copy (a few bytes per steal) is not freed.
    rbd_lock_get_owners: rbd.func('int rbd_lock_get_owners(void *image, _Out_ int *mode, _Out_ char **owners, _Inout_ size_t *max)'),
    rbd_lock_break: rbd.func('int rbd_lock_break(void *image, int mode, const char *owner)'),
    rbd_is_exclusive_lock_owner: rbd.func('int rbd_is_exclusive_lock_owner(void *image, _Out_ int *owner)'),
    rbd_metadata_get: rbd.func('int rbd_metadata_get(void *image, const char *key, _Out_ void *value, _Inout_ size_t *len)'),
    rbd_metadata_set: rbd.func('int rbd_metadata_set(void *image, const char *key, const char *value)'),
    pipe2: libc.func('int pipe2(_Out_ int *fds, int flags)'),
  };
  return loaded;
}

/** Runs a blocking librbd call on koffi's worker thread; resolves with its return value. */
export function callAsync(fn: Fn, ...args: unknown[]): Promise<number> {
  return new Promise((resolve, reject) => fn.async(...args, (err: Error | null, r: number) => (err ? reject(err) : resolve(r))));
}
