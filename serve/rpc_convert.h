// Conversions between serve/tandem.capnp messages and the plain C++ serving API
// (serve/serving_api.h), shared by the RPC server and client. Pure functions.
#pragma once

#include <string>

#include "serve/serving_api.h"
#include "serve/tandem.capnp.h"

namespace tandem::serve {

// A Text's bytes in full (a NUL inside stays; kj's std::string conversion stops at it).
std::string text_of(capnp::Text::Reader t);
// The other way: all of s's bytes (a std::string converts to Text through c_str()).
capnp::Text::Reader as_text(const std::string& s);

// Reads every field once (the traversal limit counts each read). Throws ServeError
// (InvalidRequest) for a value the schema cannot mean: an unknown priority or prompt union
// member; a malformed message throws kj::Exception from Cap'n Proto's own reader.
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
