"""gRPC servicers, one file per service of jitgate.v1; `guard` authenticates and maps errors."""
