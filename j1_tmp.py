import os, time
os.environ["TF_CPP_MIN_LOG_LEVEL"]="2"
import numpy as np
from core.backbones import get_backbone
from core.joined import joined_classifier
spec = get_backbone("efficientnet_lite0+efficientnet_lite2")
print(spec.name, spec.label, spec.input_size, spec.feature_dim, spec.params)
t=time.time()
m = joined_classifier(spec, 3)
print([l.name for l in m.layers], time.time()-t)
import keras
m.save("/tmp/j1.keras")
m2 = keras.saving.load_model("/tmp/j1.keras", safe_mode=True)
x = np.random.default_rng(0).uniform(0,255,(2,260,260,3)).astype(np.float32)
print(np.abs(m.predict(x,verbose=0)-m2.predict(x,verbose=0)).max())
