#!/usr/bin/env bash
# Fails when a pure layer (strategies, participation, trainer, kernels,
# objectives, data, DP, RNG) includes gRPC or generated protobuf headers, or
# a layer includes one above it. DESIGN.md: dependencies point one way.
set -u
root=${1:?usage: layering_test.sh SOURCE_DIR}
cd "$root" || exit 2
status=0
pure_dirs="server/strategy server/clock server/participation client/trainer common/kernels common/nn common/objectives common/data common/random common/base common/dp common/lsa"
for dir in $pure_dirs; do
  [ -d "$dir" ] || continue
  hits=$(grep -rnE '#include [<"](grpcpp?/|google/protobuf/|fedsim/v1/)' "$dir" --include='*.h' --include='*.cc' || true)
  if [ -n "$hits" ]; then
    echo "layering: $dir is a pure layer but includes gRPC or protobuf headers:"
    echo "$hits"
    status=1
  fi
done
# common/ may not depend on server/, client/, runtime/ or tools/.
hits=$(grep -rnE '#include "(server|client|runtime|tools)/' common --include='*.h' --include='*.cc' || true)
if [ -n "$hits" ]; then echo "layering: common/ includes a higher layer:"; echo "$hits"; status=1; fi
# algorithms/ (the registrations) sits between the pure layers it names
# and the services that run them: it sees common/, server/strategy,
# server/participation, server/clock and client/trainer, never the
# coordinator, the worker, a transport, runtime/ or tools/; and none of
# the layers below it sees it.
hits=$(grep -rnE '#include "(server/(coordinator|grpc)|client/(worker|grpc)|runtime|tools)/' algorithms --include='*.h' --include='*.cc' --include='*.inc' || true)
if [ -n "$hits" ]; then echo "layering: algorithms/ includes a service layer:"; echo "$hits"; status=1; fi
hits=$(grep -rnE '#include "algorithms/' common server/strategy server/participation server/clock client/trainer --include='*.h' --include='*.cc' || true)
if [ -n "$hits" ]; then echo "layering: a layer below algorithms/ includes it:"; echo "$hits"; status=1; fi
# server/ and client/ may not include each other or runtime/ or tools/.
hits=$(grep -rnE '#include "(client|runtime|tools)/' server --include='*.h' --include='*.cc' || true)
if [ -n "$hits" ]; then echo "layering: server/ includes a higher or sibling layer:"; echo "$hits"; status=1; fi
hits=$(grep -rnE '#include "(server|runtime|tools)/' client --include='*.h' --include='*.cc' || true)
if [ -n "$hits" ]; then echo "layering: client/ includes a higher or sibling layer:"; echo "$hits"; status=1; fi
# Only the gRPC adapters (and binaries) may include gRPC.
hits=$(grep -rlnE '#include [<"]grpcpp?/' common server client algorithms runtime --include='*.h' --include='*.cc' | grep -vE '^(server/grpc|client/grpc)/' || true)
if [ -n "$hits" ]; then echo "layering: gRPC included outside server/grpc and client/grpc:"; echo "$hits"; status=1; fi
# runtime/ may not include tools/.
hits=$(grep -rnE '#include "tools/' runtime --include='*.h' --include='*.cc' || true)
if [ -n "$hits" ]; then echo "layering: runtime/ includes tools/:"; echo "$hits"; status=1; fi
# The coordinator and the worker talk to their transports through
# interfaces: they include neither gRPC, nor generated service stubs, nor
# the gRPC adapters.
hits=$(grep -rnE '#include [<"](grpcpp?/|.*\.grpc\.pb\.h|server/grpc/|client/grpc/)' server/coordinator client/worker --include='*.h' --include='*.cc' || true)
if [ -n "$hits" ]; then echo "layering: the coordinator or the worker includes gRPC or its adapters:"; echo "$hits"; status=1; fi
# Libraries never read the environment or raise signals (STYLE 5.6): the
# binaries in tools/ turn flags and variables into options and seams
# (tools/fault_injection.h).
hits=$(grep -rnE '(std::)?getenv\(|std::raise\(|[^:a-z_]raise\(SIG' common server client algorithms runtime --include='*.h' --include='*.cc' || true)
if [ -n "$hits" ]; then echo "layering: a library reads the environment or raises a signal:"; echo "$hits"; status=1; fi
# No exclusions: every main() lives in tools/.
hits=$(grep -rlE '^int main\(' common server client algorithms runtime --include='*.cc' || true)
if [ -n "$hits" ]; then echo "layering: a main() outside tools/:"; echo "$hits"; status=1; fi
[ $status -eq 0 ] && echo "layering: ok"
exit $status
