"""The native sparse int8 kernel (C++ under native/, built by the install step) and its Python side."""
