// tidalctl: the Tidal command-line client. See docs/cli.md.

#include "cli/cli.h"

int main(int argc, char** argv) { return tidal::cli::Main(argc, argv); }
