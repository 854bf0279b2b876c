"""django_zrpc's own implementation of zerorpc's wire protocol (v3)."""
