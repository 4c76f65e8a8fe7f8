// Conversions between serve/tandem.capnp messages and the plain C++ serving API
// (serve/serving_api.h), shared by the RPC server and client. Pure functions.
#pragma once

#include "serve/serving_api.h"
#include "serve/tandem.capnp.h"

namespace tandem::serve {

GenerateRequest from_capnp(rpc::GenerateParams::Reader p);
void to_capnp(const GenerateRequest& r, rpc::GenerateParams::Builder p);

void to_capnp(const GenerateResult& r, rpc::Result::Builder b);
GenerateResult from_capnp(rpc::Result::Reader r);

void to_capnp(const StatsSnapshot& s, rpc::Stats::Builder b);
StatsSnapshot from_capnp(rpc::Stats::Reader r);

void to_capnp(const ModelInfo& m, rpc::ModelInfo::Builder b);
ModelInfo from_capnp(rpc::ModelInfo::Reader r);

void to_capnp(const std::vector<TokenPiece>& pieces, capnp::List<rpc::Token>::Builder b);

}  // namespace tandem::serve
