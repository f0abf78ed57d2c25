# /etc/tribune-template.d/template.hcl
consul {
  address = "127.0.0.1:8500"
}

template {
  source      = "/etc/tribune-template.d/nginx.conf.ctmpl"
  destination = "/etc/nginx/conf.d/upstreams.conf"
  command     = "systemctl reload nginx"
}
