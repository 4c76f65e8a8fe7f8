// The client-side commands (no MPI): `tandem generate` streams one completion from a server;
// `tandem bench-serve` drives a server with open-loop load (serve/bench_serve.h). Both parse
// their flags here and return the process exit status.
// generate exit codes: 0 ok; 2 usage/connection; 10 + ErrorKind for a typed server error
// (10 invalid_request, 11 overloaded, 12 deadline_exceeded, 13 shutting_down, 14 internal).
#pragma once

namespace tandem {

int generate_command(int argc, char** argv);
int bench_serve_command(int argc, char** argv);

}  // namespace tandem
