"""Built-in video autoencoders: wae3d (3DConv-Base), unetldm, vae (the wae3d backbone as a VAE), and
pixel (the identity, for samplers working in pixel space)."""

from t2vkit import hookimpl


@hookimpl
def register_decoders(register):
    from .pixel import PixelSpace
    from .unetldm import UNetLDM
    from .vae import VAE3D
    from .wae3d import WAE3D

    register("wae3d", WAE3D)
    register("unetldm", UNetLDM)
    register("vae", VAE3D)
    register("pixel", PixelSpace)
