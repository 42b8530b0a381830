/* sl/limits.h - every protocol limit and default in one place. */
#ifndef SL_LIMITS_H
#define SL_LIMITS_H

#define SL_PROTO_VERSION     1      /* hello{v} the edge accepts */
#define SL_MAX_FRAME_DEFAULT 65536u /* largest frame payload N, bytes */
#define SL_FRAME_HDR         4u     /* u32 big-endian length prefix */
#define SL_DEV_MAX           64u    /* device id: [A-Za-z0-9._:-]{1,64} */
#define SL_CMD_ID_MAX        64u    /* command id: same alphabet and length */
#define SL_TOKEN_HEX         64u    /* hex HMAC-SHA256 */
#define SL_HB_DEFAULT_S      30u    /* welcome{hb}: heartbeat the device keeps */
#define SL_HELLO_TIMEOUT_MS  10000u /* hello must arrive within this */
#define SL_IDLE_FACTOR       3u     /* idle timeout = SL_IDLE_FACTOR * hb */
#define SL_MP_MAX_DEPTH      32u    /* msgpack nesting accepted from devices */
#define SL_ENVELOPE_VERSION  1u     /* internal edge <-> service messages */

/* The largest max_frame sluice-replay takes from a recording's header (it
 * sizes frame buffers from it): what edges accepted as --max-frame before
 * the 1 MiB of EDGE_MAX_FRAME (edge/edge.h), so older recordings still read. */
#define SL_MAX_FRAME_LIMIT (16u << 20)

#endif
