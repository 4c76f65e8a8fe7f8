// Linked into the tandem binary of a sanitizer build only (TANDEM_SANITIZE): dlclose() keeps
// shared objects loaded, so LeakSanitizer can name the Open MPI plugins (mca_*.so) that own
// the allocations they keep until exit and tests/asan/lsan.supp can suppress them by name.
// Without it, the plugins are unloaded at MPI_Finalize and their frames are "<unknown module>".
extern "C" int dlclose(void*) { return 0; }
