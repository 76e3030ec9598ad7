"""Start page: what TransferLab does, three steps for a newcomer, and where the project stands."""

import streamlit as st

from core.jobs.api import has_model
from pages import ui

st.title("🧪 TransferLab")
st.markdown(
    "Build your own image classifier — *alpaca or llama*, *ripe or unripe*, *my cat or not* — without "
    "writing code. TransferLab starts from a network that already knows thousands of everyday objects "
    "and teaches it **your** classes from a few dozen photos each. Everything runs on this computer."
)

project = ui.current_project()
classes = project.classes() if project else []
runs = project.runs() if project else []
kept = sum(c.kept for c in classes)

steps = [
    ("1 · Collect photos", "collect", "📷",
     "Type your class names and let TransferLab search the web, or upload your own photos or a zip.",
     len(classes) >= 2 and kept > 0),
    ("2 · Review and train", "train", "🏋️",
     "Throw out the odd photos, pick how much of the network to retrain, and click **Train**. "
     "Watch it learn live.", any(has_model(r) for r in runs)),
    ("3 · Try it", "predict", "🔮",
     "Test the model on new photos or your webcam, see where it looked, and download it.", False),
]

st.subheader("Three steps" if not project else f"Project “{ui.md(project.name)}”")
columns = st.columns(3)
for column, (title, page, icon, text, done) in zip(columns, steps):
    with column.container(border=True):
        st.markdown(f"#### {icon} {title} {'✅' if done else ''}")
        st.write(text)
        if project:
            st.page_link(ui.PAGES[page], label=f"Go to {title.split('· ')[1].lower()}", icon="➡️")

if project is None:
    st.info("👈 Start by creating a project in the sidebar: give it a name and click **Create project**.")
else:
    a, b, c = st.columns(3)
    a.metric("Classes", len(classes))
    b.metric("Photos kept", kept)
    best = max((r.summary.get("val_accuracy") or 0 for r in runs), default=None)
    c.metric("Best validation accuracy", ui.percent(best) if best else "—")
    ui.out_of_step(project)
