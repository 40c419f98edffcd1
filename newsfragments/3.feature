Print-farm service: the twistd raft3d plugin serving the printers, filaments and print jobs REST API on a Raft3D cluster, with tac files, a local cluster runner and a systemd unit.
