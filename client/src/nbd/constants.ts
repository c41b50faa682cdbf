// NBD wire constants (fixed newstyle handshake, simple replies). Numbers from the NBD protocol
// document; nothing else in the NBD frontend spells a magic number.

export const NBDMAGIC_HI = 0x4e42444d; // "NBDM"
export const NBDMAGIC_LO = 0x41474943; // "AGIC"
export const IHAVEOPT_HI = 0x49484156; // "IHAV"
export const IHAVEOPT_LO = 0x454f5054; // "EOPT"
export const OPTION_REPLY_MAGIC_HI = 0x0003e889;
export const OPTION_REPLY_MAGIC_LO = 0x045565a9;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;

/** Server handshake flags. */
export const FLAG_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_NO_ZEROES = 1 << 1;
/** Client flags. */
export const FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_C_NO_ZEROES = 1 << 1;
export const CLIENT_FLAGS_KNOWN = FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES;

/** Transmission flags. */
export const TFLAG_HAS_FLAGS = 1 << 0;
export const TFLAG_READ_ONLY = 1 << 1;
export const TFLAG_SEND_FLUSH = 1 << 2;
export const TFLAG_SEND_FUA = 1 << 3;
export const TFLAG_ROTATIONAL = 1 << 4;
export const TFLAG_SEND_TRIM = 1 << 5;
export const TFLAG_SEND_WRITE_ZEROES = 1 << 6;
export const TFLAG_SEND_DF = 1 << 7;
export const TFLAG_CAN_MULTI_CONN = 1 << 8;
export const TFLAG_SEND_CACHE = 1 << 10;
export const TFLAG_SEND_FAST_ZERO = 1 << 11;

export enum Opt {
  ExportName = 1,
  Abort = 2,
  List = 3,
  StartTls = 5,
  Info = 6,
  Go = 7,
  StructuredReply = 8,
  ListMetaContext = 9,
  SetMetaContext = 10,
  ExtendedHeaders = 11,
}

export enum Rep {
  Ack = 1,
  Server = 2,
  Info = 3,
  MetaContext = 4,
  ErrUnsup = 0x80000001,
  ErrPolicy = 0x80000002,
  ErrInvalid = 0x80000003,
  ErrPlatform = 0x80000004,
  ErrTlsReqd = 0x80000005,
  ErrUnknown = 0x80000006,
  ErrShutdown = 0x80000007,
  ErrBlockSizeReqd = 0x80000008,
  ErrTooBig = 0x80000009,
}

export enum InfoType {
  Export = 0,
  Name = 1,
  Description = 2,
  BlockSize = 3,
}

export enum Cmd {
  Read = 0,
  Write = 1,
  Disc = 2,
  Flush = 3,
  Trim = 4,
  Cache = 5,
  WriteZeroes = 6,
  BlockStatus = 7,
}

/** Command flags. */
export const CMD_FLAG_FUA = 1 << 0;
export const CMD_FLAG_NO_HOLE = 1 << 1;
export const CMD_FLAG_DF = 1 << 2;
export const CMD_FLAG_REQ_ONE = 1 << 3;
export const CMD_FLAG_FAST_ZERO = 1 << 4;

/** Error numbers a simple reply may carry (Linux values). */
export const NBD_EPERM = 1;
export const NBD_EIO = 5;
export const NBD_ENOMEM = 12;
export const NBD_EINVAL = 22;
export const NBD_ENOSPC = 28;
export const NBD_EOVERFLOW = 75;
export const NBD_ENOTSUP = 95;
export const NBD_ESHUTDOWN = 108;

export const GREETING_BYTES = 18;
export const OPTION_HEADER_BYTES = 16;
export const OPTION_REPLY_HEADER_BYTES = 20;
export const REQUEST_HEADER_BYTES = 28;
export const SIMPLE_REPLY_BYTES = 16;
/** EXPORT_NAME reply: size, flags, and 124 reserved zero bytes unless NO_ZEROES. */
export const EXPORT_NAME_REPLY_BYTES = 10;
export const EXPORT_NAME_ZEROES = 124;

/** Longest export name the protocol allows. */
export const MAX_NAME_BYTES = 4096;
/**
 * Longest option data read: a name plus a few INFO requests fits with room to spare. Larger
 * options are refused (ERR_TOO_BIG) and the connection dropped rather than read.
 */
export const MAX_OPTION_BYTES = MAX_NAME_BYTES + 1024;
/**
 * Largest READ/WRITE accepted (then split into target-sized pieces): qemu's NBD_MAX_BUFFER_SIZE
 * and the kernel nbd driver's largest request. Larger ones fail with EINVAL.
 */
export const MAX_REQUEST_BYTES = 32 << 20;
