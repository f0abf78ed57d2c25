# /etc/tribune.d/client.hcl on every other machine.
datacenter = "dc1"
data_dir   = "/var/lib/tribune"
bind_addr  = "10.0.0.17"
retry_join = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
