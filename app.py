"""TransferLab: build your own image classifier by transfer learning, in the browser.

Run with `make run` (or `streamlit run app.py`). Pages live in pages/, all logic in core/.
"""

import streamlit as st

from pages import ui

st.set_page_config(page_title="TransferLab", page_icon="🧪", layout="wide")

ui.land_unknown_paths_on_start()
navigation = st.navigation(
    {
        "": [st.Page("pages/home.py", title="Start", icon="🏠", url_path="start", default=True)],
        "Build": [
            st.Page("pages/collect.py", title="1 · Collect photos", icon="📷", url_path="collect"),
            st.Page("pages/review.py", title="2 · Review dataset", icon="🧹", url_path="review"),
            st.Page("pages/train.py", title="3 · Train", icon="🏋️", url_path="train"),
        ],
        "Use": [
            st.Page("pages/results.py", title="4 · Results & export", icon="📊", url_path="results"),
            st.Page("pages/predict.py", title="5 · Try it", icon="🔮", url_path="predict"),
        ],
    }
)
ui.project_sidebar()
ui.run_page(navigation)
