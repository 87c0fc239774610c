"""The demo frame folder reader: queries parsed exactly as the node parses them."""
import numpy as np
from PIL import Image

from synseg_core.evaluation.demo_frames import read_demo_frames


def test_query_file_is_parsed_like_a_node_query(tmp_path):
    (tmp_path / "images").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "images" / "a.png")
    (tmp_path / "query.txt").write_text("red  circle; blue square,\nred circle\n")
    frames = read_demo_frames(tmp_path)
    assert frames.query == ["red circle", "blue square"]
    assert frames.classes == ["background", "red circle", "blue square"] and frames.labels is None
