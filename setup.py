"""
Packaging for Raft3D.  C{twisted.plugins} is listed explicitly: the plugin
directory has no C{__init__.py} and C{find_packages} cannot see it.
"""

from setuptools import find_packages, setup

setup(
    name="raft3d",
    version="0.1.0",
    description="Replicated 3D print-farm manager on a Raft log",
    python_requires=">=3.11",
    packages=find_packages(include=["raft3d", "raft3d.*"]) + ["twisted.plugins"],
    package_data={"twisted.plugins": ["raft3d_plugin.py"]},
    install_requires=[
        "twisted==26.10.0",
        "klein==24.8.0",
        "treq==26.7.0",
        "attrs==26.1.0",
        "cbor2==6.3.0",
        "zope.interface==8.7",
    ],
    extras_require={
        "test": [
            "pytest==9.2.0",
            "pytest-twisted==1.14.3",
            "hypothesis==6.170.17",
        ],
        "dev": [
            "ruff==0.17.6",
            "mypy==2.4.1",
            "mypy-zope==1.0.17",
        ],
    },
)
