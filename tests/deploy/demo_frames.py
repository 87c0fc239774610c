"""The bundled demo model's sample frames, for checking a reduced-precision path against fp32 on trained weights."""
import cv2

from synseg_core.inference.segmenter import BUNDLED_CHECKPOINTS

FRAMES = BUNDLED_CHECKPOINTS["demo"].parent / "frames"


def compare_on_demo_frames(reference, candidate, limit: int = 6) -> tuple[list[float], float]:
    """Per frame, the share of pixels where the two Segmenters' labels agree; and the candidate's foreground IoU."""
    query = [c.strip() for c in (FRAMES / "query.txt").read_text().split(",")]
    agreement, intersection, union = [], 0, 0
    for path in sorted((FRAMES / "images").glob("*.png"))[:limit]:
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        truth = cv2.imread(str(FRAMES / "labels" / path.name), cv2.IMREAD_UNCHANGED) > 0
        a, b = reference.segment(rgb, query), candidate.segment(rgb, query)
        agreement.append(float((a.labels == b.labels).mean()))
        intersection += int((truth & (b.labels > 0)).sum())
        union += int((truth | (b.labels > 0)).sum())
    return agreement, intersection / union
