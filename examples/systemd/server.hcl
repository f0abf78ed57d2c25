# /etc/tribune.d/server.hcl on each of three servers (10.0.0.1, .2, .3).
datacenter       = "dc1"
data_dir         = "/var/lib/tribune"
server           = true
bootstrap_expect = 3
bind_addr        = "10.0.0.1"
retry_join       = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
ui               = true
