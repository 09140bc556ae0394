"""The daemon: RPC server protocol, dispatch, driver, persistence, listeners."""
