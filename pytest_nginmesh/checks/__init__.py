"""Pure checks: data in (a pod, an iptables-save text, counts, scrapes), findings out."""
