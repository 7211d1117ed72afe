"""Export: torch -> ONNX (QDQ int8) and OpenVINO IR, verified on the dev set, with the folder's manifest."""
