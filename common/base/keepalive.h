// File: common/base/keepalive.h
//
// gRPC keepalive settings shared by fedsim-client and fedsim-server, set
// together as gRPC's keepalive.md asks: a client that pings more often than
// the server's minimum interval gets GOAWAY "too_many_pings" and loses its
// connection (RELIABILITY 3).
#ifndef FEDSIM_COMMON_BASE_KEEPALIVE_H_
#define FEDSIM_COMMON_BASE_KEEPALIVE_H_

namespace fedsim {

// fedsim-client pings every 5 s, with or without a call in flight.
inline constexpr int kClientKeepaliveTimeMs = 5000;
// fedsim-server accepts pings this close together (and never strikes).
inline constexpr int kServerMinPingIntervalMs = 1000;

static_assert(kClientKeepaliveTimeMs >= kServerMinPingIntervalMs,
              "the client must not ping more often than the server permits");

}  // namespace fedsim

#endif  // FEDSIM_COMMON_BASE_KEEPALIVE_H_
