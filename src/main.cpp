#include "portico/cli/app.hpp"

int main(int argc, char** argv) { return portico::cli::main(argc, argv); }
