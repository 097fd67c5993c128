"""Shrinking: making Argo's objects weigh less in etcd without changing what the controller or a container sees."""
